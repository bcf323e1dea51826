"""bps (ctrl_bps with the parsl plugin, local site) runs the CLEAN loop's steps as the loop does in-process.

``radio-clean clean --bps SUBMIT_FILE`` makes each step of the loop (start,
cycle001, ..., finishNNN) one ``bps submit`` of the step's pipeline; the
submit files cluster each step's quanta into one job per field and band.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from lsst.ctrl.bps import BPS_DEFAULTS, BPS_SEARCH_ORDER, BpsConfig
from lsst.ctrl.bps.initialize import translate_command_line_values
from lsst.ctrl.bps.parsl.site import SiteConfig
from lsst.ctrl.bps.quantum_clustering_funcs import check_clustering_config
from lsst.daf.butler import Butler
from lsst.pipe.base import Pipeline

from radio_clean.cli import main
from radio_clean.pipeline import STEPS

CHECKOUT = Path(__file__).resolve().parents[1]
BPS_DIR = CHECKOUT / "bps"
PIPELINES = CHECKOUT / "pipelines"
BIN = Path(sys.executable).parent
QUERY = "instrument='VLA'"
# Small and quick, the same for both runs: niter=10 is reached in the first minor cycle, so CLEAN
# stops after 2 major cycles: three steps (start, cycle001, finish002), three bps submissions.
CLEAN_CONFIG = [
    "-c", "parameters:niter=10",
    "-c", "parameters:imsize=[64]",
    "-c", "parameters:cell=['2arcsec']",
    "-c", "parameters:datacolumn=data",
]  # fmt: skip
STEP_RUNS = ("start", "cycle001", "finish002")


def load_submit_file(name):
    return BpsConfig(str(BPS_DIR / name), search_order=BPS_SEARCH_ORDER, defaults=BPS_DEFAULTS)


def _labels(pipeline_file):
    with open(PIPELINES / pipeline_file) as stream:
        return list(yaml.safe_load(stream)["tasks"])


@pytest.mark.parametrize(
    "submit_file, pipeline_files",
    [
        ("continuum_local.yaml", ["ContinuumImaging.yaml", "ContinuumImagingByObservation.yaml"]),
        ("continuum_slurm.yaml", ["ContinuumImaging.yaml", "ContinuumImagingByObservation.yaml"]),
        ("cube_local.yaml", ["CubeImaging.yaml"]),
    ],
)
def test_cluster_holds_every_task_of_each_step(submit_file, pipeline_files):
    config = load_submit_file(submit_file)
    clustered = [label.strip() for label in config["cluster"]["continuum"]["pipetasks"].split(",")]
    for pipeline_file in pipeline_files:
        labels = _labels(pipeline_file)
        # Every label of the pipeline, in the pipeline's order.
        assert [label for label in clustered if label in labels] == labels, pipeline_file
        for subset in STEPS:
            # What bps does with a step's graph: one cluster of the step's labels, the other
            # labels of the list left out.
            graph = Pipeline.from_uri(f"{PIPELINES / pipeline_file}#{subset}").to_graph()
            clusters, ordered = check_clustering_config(config["cluster"], graph.make_task_xgraph())
            assert clusters == ["continuum"], (pipeline_file, subset)
            assert set(ordered["continuum"]) == set(graph.tasks), (pipeline_file, subset)
    # No label of another pipeline: a cube label would be a job of its own in the continuum files.
    assert set(clustered) == {label for name in pipeline_files for label in _labels(name)}


@pytest.mark.parametrize(
    "name, site, pipeline, dimensions",
    [
        ("continuum_local.yaml", "local", "ContinuumImaging.yaml", ["instrument", "field", "band"]),
        ("continuum_slurm.yaml", "slurm", "ContinuumImaging.yaml", ["instrument", "field", "band"]),
        ("cube_local.yaml", "local", "CubeImaging.yaml", ["instrument", "field", "band", "channel_chunk"]),
    ],
)
def test_submit_files_load(name, site, pipeline, dimensions):
    config = load_submit_file(name)
    assert config["computeSite"] == site
    assert config["wmsServiceClass"] == "lsst.ctrl.bps.parsl.ParslService"
    # Alone, bps submit runs the first step; radio-clean clean gives each step's pipeline with -p.
    assert config["pipelineYaml"] == f"resource://radio_clean/pipelines/{pipeline}#start"
    raw = {"replaceVars": False}
    names = "_".join(f"{{{name}}}" for name in dimensions)
    directories = "/".join(f"{{{name}}}" for name in dimensions)
    assert config.search("templateDataId", opt=raw)[1] == names
    assert config.search("subDirTemplate", opt=raw)[1] == "{label}/" + directories
    assert config["cluster"]["continuum"]["dimensions"] == ",".join(dimensions)
    assert config["inCollection"] == "raw/visibilities"
    # -c options here would be added to every step's graph, cycle settings included.
    assert config["extraQgraphOptions"] == ""
    SiteConfig.from_config(config)  # the site class imports and accepts its section


def test_command_line_replaces_the_pipeline_with_a_step_file(tmp_path):
    """What `bps submit -p STEP.yaml --output-run ...` (as radio-clean clean calls it) does to the config."""
    config = load_submit_file("continuum_local.yaml")
    step_file = str(tmp_path / "cycle003.yaml")
    translate_command_line_values(
        config,
        butler_config="/data/repo",
        input="raw/visibilities",
        output="images/run1",
        output_run="images/run1/cycle003",
        pipeline=step_file,
        data_query="instrument = 'VLA' AND field = '3C273'",
    )
    assert config["pipelineYaml"] == step_file
    command = config.search("createQuantumGraph", opt={"replaceVars": True})[1]
    assert f"--pipeline {step_file} " in command
    assert "-o images/run1 --output-run images/run1/cycle003" in command
    assert "-d \"instrument = 'VLA' AND field = '3C273'\"" in command
    assert config["submitPath"].endswith("/submit/images/run1/cycle003")


def test_many_chains_reach_pipetask_qgraph_in_a_file(tmp_path):
    """The chains of a step go to `pipetask qgraph --data-id-table`: command lines do not grow with them.

    As one data-query term per chain (~70 bytes), 10,000 chains would make a 700 kB argument: no
    process can be started with it (128 KiB an argument).
    """
    from astropy.table import Table

    from radio_clean.loop import CleanLoop

    config = load_submit_file("continuum_local.yaml")
    config["extraQgraphOptions"] = "--skip-existing-in images/old"  # the submit file's own options
    chains = [(("instrument", "VLA"), ("field", f"F{n:05d}"), ("band", "1400MHz-1ch")) for n in range(10_000)]
    assert CleanLoop._chain_table_options(config, None, str(tmp_path)) == []
    options = CleanLoop._chain_table_options(config, chains, str(tmp_path))
    table_path = tmp_path / "chains.ecsv"
    own_and_chains = f"--skip-existing-in images/old --data-id-table {table_path}"
    assert options == ["--extra-qgraph-options", own_and_chains]
    translate_command_line_values(
        config,
        butler_config="/data/repo",
        output_run="images/run1/cycle003",
        data_query="instrument = 'VLA'",
        extra_qgraph_options=options[1],
    )
    command = config.search("createQuantumGraph", opt={"replaceVars": True})[1]
    assert own_and_chains in command
    assert len(command) < 2_000
    table = Table.read(table_path)
    assert table.colnames == ["instrument", "field", "band"]
    assert len(table) == 10_000 and table["field"][-1] == "F09999"


@pytest.fixture(scope="module")
def bps_and_loop_runs(tmp_path_factory, demo_ms_dir):
    """The demo MS imaged by ``radio-clean clean --bps`` and in-process into the same repository."""
    root = tmp_path_factory.mktemp("bps")
    ms = root / "3C273XC1.ms"
    shutil.copytree(demo_ms_dir / "3C273XC1.ms", ms)
    repo = str(root / "repo")
    assert main(["create-repo", repo]) == 0
    assert main(["ingest", repo, str(ms)]) == 0
    clean = ["clean", repo, "-p", str(PIPELINES / "ContinuumImaging.yaml"), "-d", QUERY, *CLEAN_CONFIG]

    env = dict(os.environ)
    # bps and its jobs call pipetask and butler by name.
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    # bps puts its submit directories under ${PWD}, parsl its runinfo/ under the working directory.
    env["PWD"] = str(root)
    # parsl's HighThroughputExecutor, when not given an address, also asks api.ipify.org for the
    # public one (30 s time-out). Keep the test on this machine: a closed local port as proxy
    # makes that request fail at once.
    env["HTTPS_PROXY"] = env["https_proxy"] = "http://127.0.0.1:9"
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    # A temporary directory of their own, to see what the submissions and their jobs leave in it
    # (short: the worker pools make Unix sockets, whose paths are limited to 107 characters).
    env["TMPDIR"] = tempfile.mkdtemp(prefix="rc-bps-")

    def run_bps():
        started = time.perf_counter()
        process = subprocess.run(
            [str(BIN / "radio-clean"), *clean, "-o", "bps/continuum",
             "--bps", str(BPS_DIR / "continuum_local.yaml")],
            cwd=root, env=env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        return process, time.perf_counter() - started

    bps, seconds = run_bps()
    print(f"radio-clean clean --bps: {seconds:.1f} s for {len(STEP_RUNS)} steps")
    again, again_seconds = run_bps()
    print(f"radio-clean clean --bps again (nothing to do): {again_seconds:.1f} s")
    assert main([*clean, "-o", "loop/continuum"]) == 0
    yield root, repo, bps, again, env["TMPDIR"]
    shutil.rmtree(env["TMPDIR"], ignore_errors=True)


def _products(butler, run):
    """Dataset type name -> ref of every product (not task config/log/metadata) in a RUN."""
    return {
        ref.datasetType.name: ref
        for ref in butler.query_all_datasets(run, limit=None)
        if not ref.datasetType.name.endswith(("_config", "_log", "_metadata"))
        and ref.datasetType.name != "packages"
    }


def test_bps_steps_match_the_loop(bps_and_loop_runs):
    root, repo, bps, _, _ = bps_and_loop_runs
    assert bps.returncode == 0, bps.stderr[-3000:]
    assert "iteration limit (stop code 1) after 10 iterations and 2 major cycles" in bps.stdout
    for step in STEP_RUNS:
        # Each step was a bps submission of its own: one job for the field and band (the
        # cluster), plus pipetaskInit and the final job.
        logs = root / "submit" / "bps" / "continuum" / step / "logs"
        assert sorted(p.name for p in logs.iterdir()) == ["continuum", "finalJob", "pipetaskInit"], step
        job_log = logs / "continuum" / "VLA" / "3C273" / "8085MHz-1ch"
        assert (job_log / "continuum_VLA_3C273_8085MHz-1ch.stderr").exists(), step

    with Butler.from_config(repo) as butler:
        for output in ("bps/continuum", "loop/continuum"):
            # Each step in a RUN of its own, the newest first, at the head of the output collection.
            assert butler.collections.get_info(output).children == (
                *(f"{output}/{step}" for step in reversed(STEP_RUNS)),
                "raw/visibilities",
            )
        products = {}
        for step in STEP_RUNS:
            ours = _products(butler, f"bps/continuum/{step}")
            theirs = _products(butler, f"loop/continuum/{step}")
            # Every product the loop made in this step, for the same data IDs, and nothing else.
            assert sorted(ours) == sorted(theirs), step
            assert all(ours[name].dataId == theirs[name].dataId for name in theirs), step
            products.update({name: (ours[name], theirs[name]) for name in theirs})
        assert {"psf", "residual_c0", "summary_c1", "residual_c1", "summary_c2", "image"} <= set(products)

        summary, reference = (butler.get(ref) for ref in products["clean_summary"])
        assert (summary["stopcode"], summary["iterdone"], summary["nmajordone"]) == (
            reference["stopcode"],
            reference["iterdone"],
            reference["nmajordone"],
        )
        assert (summary["stopcode"], summary["iterdone"], summary["nmajordone"]) == (1, 10, 2)
        assert summary["peak_residual_before_cycle"] == pytest.approx(
            reference["peak_residual_before_cycle"], rel=1e-6
        )

        image, reference_image = (butler.get(ref).pixels for ref in products["image"])
        assert image.shape == (1, 1, 64, 64)
        peak = np.abs(reference_image).max()
        assert peak > 0
        np.testing.assert_allclose(image, reference_image, rtol=0, atol=1e-6 * peak)
        # Every other image of every step (PSF, residuals, models, masks, ...) too.
        for name, (ref, reference_ref) in products.items():
            if ref.datasetType.storageClass_name == "RadioImage":
                a, b = butler.get(ref).pixels, butler.get(reference_ref).pixels
                scale = max(np.nanmax(np.abs(b)), np.finfo(np.float32).tiny)
                np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * scale, err_msg=name)


def test_bps_leaves_nothing_in_the_temporary_directory(bps_and_loop_runs):
    """No scratch of the jobs, no socket directory of parsl's worker pools (one per submission before)."""
    _, _, bps, _, tmpdir = bps_and_loop_runs
    assert bps.returncode == 0, bps.stderr[-3000:]
    assert os.listdir(tmpdir) == []


def test_bps_run_again_submits_nothing(bps_and_loop_runs):
    """The same command again finds every step done: no submission, the same outcome."""
    root, repo, _, again, _ = bps_and_loop_runs
    assert again.returncode == 0, again.stderr[-3000:]
    for step in STEP_RUNS:
        assert f"Step {step}: done before, not submitted again." in again.stderr
    assert "bps submit" not in again.stderr
    assert "iteration limit (stop code 1) after 10 iterations and 2 major cycles" in again.stdout
