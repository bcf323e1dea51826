"""bps (ctrl_bps with the parsl plugin, local site) runs the shipped pipeline as pipetask does."""

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from lsst.ctrl.bps import BPS_DEFAULTS, BPS_SEARCH_ORDER, BpsConfig
from lsst.ctrl.bps.parsl.site import SiteConfig
from lsst.daf.butler import Butler

import radio_clean  # noqa: F401  (sets up casatools before anything imports it)
from radio_clean.cli import main

CHECKOUT = Path(__file__).resolve().parents[1]
BPS_DIR = CHECKOUT / "bps"
BIN = Path(sys.executable).parent
# Small and quick, the same for bps and pipetask.
PIPETASK_CONFIG = [
    "-c", "parameters:niter=100",
    "-c", "parameters:imsize=[64]",
    "-c", "parameters:cell=['2arcsec']",
    "-c", "parameters:datacolumn=data",
]  # fmt: skip
QUERY = "instrument='VLA'"


def load_submit_file(name):
    return BpsConfig(str(BPS_DIR / name), search_order=BPS_SEARCH_ORDER, defaults=BPS_DEFAULTS)


def test_cluster_holds_every_task_of_the_shipped_pipeline():
    with open(BPS_DIR / "continuum_common.yaml") as stream:
        common = yaml.safe_load(stream)
    with open(CHECKOUT / "pipelines" / "ContinuumImaging.yaml") as stream:
        pipeline = yaml.safe_load(stream)
    clustered = [label.strip() for label in common["cluster"]["continuum"]["pipetasks"].split(",")]
    assert clustered == list(pipeline["tasks"]), (
        "bps/continuum_common.yaml: the cluster's pipetasks must list every task of "
        "pipelines/ContinuumImaging.yaml"
    )


def test_cube_submit_file_clusters_each_chunk():
    config = load_submit_file("cube_local.yaml")
    with open(CHECKOUT / "pipelines" / "CubeImaging.yaml") as stream:
        pipeline = yaml.safe_load(stream)
    assert config["pipelineYaml"] == "resource://radio_clean/pipelines/CubeImaging.yaml"
    clustered = [label.strip() for label in config["cluster"]["continuum"]["pipetasks"].split(",")]
    assert clustered == list(pipeline["tasks"])
    assert config["cluster"]["continuum"]["dimensions"] == "instrument,field,band,channel_chunk"
    assert config["computeSite"] == "local"


@pytest.mark.parametrize("name, site", [("continuum_local.yaml", "local"), ("continuum_slurm.yaml", "slurm")])
def test_submit_files_load(name, site):
    config = load_submit_file(name)
    assert config["computeSite"] == site
    assert config["wmsServiceClass"] == "lsst.ctrl.bps.parsl.ParslService"
    assert config["pipelineYaml"] == "resource://radio_clean/pipelines/ContinuumImaging.yaml"
    raw = {"replaceVars": False}
    assert config.search("templateDataId", opt=raw)[1] == "{instrument}_{field}_{band}"
    assert config.search("subDirTemplate", opt=raw)[1] == "{label}/{instrument}/{field}/{band}"
    assert config["cluster"]["continuum"]["dimensions"] == "instrument,field,band"
    assert config["inCollection"] == "raw/visibilities"
    SiteConfig.from_config(config)  # the site class imports and accepts its section


@pytest.fixture(scope="module")
def bps_and_pipetask_runs(tmp_path_factory, demo_ms_dir):
    """The demo MS imaged by pipetask run and by bps submit into the same repository."""
    root = tmp_path_factory.mktemp("bps")
    ms = root / "3C273XC1.ms"
    shutil.copytree(demo_ms_dir / "3C273XC1.ms", ms)
    repo = str(root / "repo")
    assert main(["create-repo", repo]) == 0
    assert main(["ingest", repo, str(ms)]) == 0

    env = dict(os.environ)
    # bps and its jobs call pipetask and butler by name.
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    # bps puts its submit directory under ${PWD}, parsl its runinfo/ under the working directory.
    env["PWD"] = str(root)
    # parsl's HighThroughputExecutor, when not given an address, also asks api.ipify.org for the
    # public one (30 s time-out). Keep the test on this machine: a closed local port as proxy
    # makes that request fail at once.
    env["HTTPS_PROXY"] = env["https_proxy"] = "http://127.0.0.1:9"
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)

    pipeline = load_submit_file("continuum_local.yaml")["pipelineYaml"]
    pipetask = subprocess.run(
        [str(BIN / "pipetask"), "run", "-b", repo, "-i", "raw/visibilities", "-o", "pipetask/continuum",
         "--output-run", "pipetask/continuum/run", "-p", pipeline, *PIPETASK_CONFIG, "-d", QUERY,
         "--register-dataset-types"],
        cwd=root, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert pipetask.returncode == 0, pipetask.stderr[-3000:]

    bps = subprocess.run(
        [str(BIN / "bps"), "submit", str(BPS_DIR / "continuum_local.yaml"), "-b", repo,
         "-o", "bps/continuum", "--output-run", "bps/continuum/run", "-d", QUERY,
         "--extra-qgraph-options", shlex.join(PIPETASK_CONFIG)],
        cwd=root, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    return root, repo, bps


def _outputs(butler, run):
    """Dataset type name -> ref of every product (not task config/log/metadata) in a RUN."""
    refs = butler.registry.queryDatasets(..., collections=run)
    return {
        ref.datasetType.name: ref
        for ref in refs
        if not ref.datasetType.name.endswith(("_config", "_log", "_metadata"))
        and ref.datasetType.name != "packages"
    }


def test_bps_matches_pipetask(bps_and_pipetask_runs):
    root, repo, bps = bps_and_pipetask_runs
    submit = root / "submit" / "bps" / "continuum" / "run"
    assert bps.returncode == 0, bps.stderr[-3000:]
    # One job for the field and band (the cluster), plus pipetaskInit and the final job.
    assert sorted(p.name for p in (submit / "logs").iterdir()) == ["continuum", "finalJob", "pipetaskInit"]
    job_log = submit / "logs" / "continuum" / "VLA" / "3C273" / "8085MHz-1ch"
    assert (job_log / "continuum_VLA_3C273_8085MHz-1ch.stderr").exists()

    with Butler.from_config(repo) as butler:
        assert butler.collections.get_info("bps/continuum").children == (
            "bps/continuum/run",
            "raw/visibilities",
        )
        ours = _outputs(butler, "bps/continuum/run")
        theirs = _outputs(butler, "pipetask/continuum/run")
        # The final job registered every product that pipetask made, for the same data IDs.
        assert "image" in theirs and "clean_summary" in theirs
        assert sorted(ours) == sorted(theirs), bps.stderr[-3000:]
        assert all(ours[name].dataId == theirs[name].dataId for name in theirs)

        summary = butler.get(ours["clean_summary"])
        reference = butler.get(theirs["clean_summary"])
        assert (summary["iterdone"], summary["nmajordone"], summary["stopcode"]) == (
            reference["iterdone"],
            reference["nmajordone"],
            reference["stopcode"],
        )
        assert summary["iterdone"] == 100 and summary["stop_reason"] == "iteration limit"
        assert summary["peak_residual_before_cycle"] == pytest.approx(
            reference["peak_residual_before_cycle"], rel=1e-6
        )

        image = butler.get(ours["image"]).pixels
        reference_image = butler.get(theirs["image"]).pixels
        assert image.shape == (1, 1, 64, 64)
        peak = np.abs(reference_image).max()
        assert peak > 0
        np.testing.assert_allclose(image, reference_image, rtol=0, atol=1e-6 * peak)
        # Every other image of every cycle (PSF, residuals, models, masks, ...) too.
        for name, ref in theirs.items():
            if ref.datasetType.storageClass_name == "RadioImage":
                a, b = butler.get(ours[name]).pixels, butler.get(ref).pixels
                scale = max(np.nanmax(np.abs(b)), np.finfo(np.float32).tiny)
                np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * scale, err_msg=name)
