"""Campaigns through bps (ctrl_bps with the parsl plugin, local site) and bps/campaign_local.yaml.

A step of many chains is cut into a few jobs (``partitionMaxClusters``), each
a ``pipetask run-qbb`` of its share of the chains. Two things are run here:
one step of the middleware's mock tasks, through bps's final job (``butler
aggregate-graph``, which has to know the mock storage classes), and twenty
simulated fields imaged for real, each checked against its true sky.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from lsst.ctrl.bps import BPS_DEFAULTS, BPS_SEARCH_ORDER, BpsConfig
from lsst.ctrl.bps.quantum_clustering_funcs import check_clustering_config
from lsst.daf.butler import Butler
from lsst.pipe.base import Pipeline

from radio_clean.campaign import synthetic_repository
from radio_clean.ingest import INGEST_RUN
from radio_clean.loop import CleanLoop, DatasetMemo, MockRun, _Step, step_run
from radio_clean.pipeline import STEPS

CHECKOUT = Path(__file__).resolve().parents[1]
CAMPAIGN_LOCAL = str(CHECKOUT / "bps" / "campaign_local.yaml")
PIPELINE = "resource://radio_clean/pipelines/ContinuumImaging.yaml"
BIN = Path(sys.executable).parent


def _bps_environment(monkeypatch, directory):
    """What `radio-clean ... --bps` needs around it: as tests/test_bps.py sets it up."""
    # bps and its jobs call pipetask and butler by name.
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    # bps puts its submit directories under ${PWD}, parsl its runinfo/ under the working directory.
    monkeypatch.chdir(directory)
    monkeypatch.setenv("PWD", str(directory))
    # parsl asks api.ipify.org for the public address (30 s time-out): fail at once instead.
    for name in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_campaign_submit_file_cuts_a_step_into_two_jobs():
    config = BpsConfig(CAMPAIGN_LOCAL, search_order=BPS_SEARCH_ORDER, defaults=BPS_DEFAULTS)
    cluster = config["cluster"]["continuum"]
    assert cluster["dimensions"] == "instrument"
    assert cluster["partitionDimensions"] == "field,band"
    # As many jobs as the local site runs at once.
    assert cluster["partitionMaxClusters"] == config["site"]["local"]["cores"] == 2
    assert config["wmsServiceClass"] == "lsst.ctrl.bps.parsl.ParslService"
    for subset in STEPS:
        graph = Pipeline.from_uri(f"{PIPELINE}#{subset}").to_graph()
        clusters, ordered = check_clustering_config(config["cluster"], graph.make_task_xgraph())
        assert clusters == ["continuum"] and set(ordered["continuum"]) == set(graph.tasks), subset


def test_mock_step_gets_through_the_final_job(tmp_path, monkeypatch):
    """One step of mock tasks as a bps submission: its outputs registered by ``butler aggregate-graph``.

    The final job used to stop with ``KeyError: '_mock_RadioImage'``.
    """
    _bps_environment(monkeypatch, tmp_path)
    repo = str(tmp_path / "repo")
    chains = synthetic_repository(repo, n_fields=5, fields_per_observation=2)
    loop = CleanLoop(
        repo,
        pipeline_uri=PIPELINE,
        inputs=[INGEST_RUN],
        output="mock/bps",
        bps_submit=CAMPAIGN_LOCAL,
        mock=MockRun(cycles=2, failures={"deconvolve": "field = 'f00003'"}),
    )
    start = _Step("start", step_run("mock/bps", "start"), 0, 1)
    failed = {}
    with Butler.from_config(repo, writeable=True) as butler:
        loop._prepare_output(butler)
        ran = loop._run_step(butler, start, None, DatasetMemo(), None, None, failed)
        butler.registry.refresh()
        # The final job registered the step's RUN and put it at the head of the output collection.
        assert butler.collections.get_info("mock/bps").children[0] == "mock/bps/start"
        summaries = butler.query_datasets("_mock_summary_c1", collections="mock/bps/start")
        made = sorted(ref.dataId["field"] for ref in summaries)
    fields = [field for field, _ in chains]
    assert made == [field for field in fields if field != "f00003"]
    assert [dict(chain)["field"] for chain in ran] == made
    # The chain whose mock deconvolve raised is reported, and only it.
    assert [dict(chain)["field"] for chain in failed] == ["f00003"]
    assert "made no _mock_summary_c1 for f00003" in next(iter(failed.values()))
    # 5 chains x 4 quanta (makePsf, majorCycle, autoMask, deconvolve), one of them failed.
    assert loop.steps[0].quanta == 19
    logs = tmp_path / "submit" / "mock" / "bps" / "start" / "logs"
    # Two jobs for the five chains, plus pipetaskInit and the final job.
    assert sorted(p.name for p in (logs / "continuum" / "SIM").iterdir()) == [
        "continuum_SIM_001.stderr", "continuum_SIM_001.stdout",
        "continuum_SIM_002.stderr", "continuum_SIM_002.stdout",
    ]  # fmt: skip
    final = (logs / "finalJob" / "finalJob.stderr").read_text()
    assert "KeyError" not in final and "Traceback" not in final


N_FIELDS = 20
CELL_ARCSEC = 8.0
IMSIZE = 64
NITER = 10
"""Reached in the first minor cycle: CLEAN stops after 2 major cycles, in 3 steps (3 bps submissions)."""


def test_twenty_simulated_fields_through_bps(tmp_path, monkeypatch):
    """Twenty simulated MSs imaged by ``radio-clean campaign --bps bps/campaign_local.yaml``.

    Each field holds one point source of its own flux (0.2 to 1.15 Jy) at its
    own offset from the phase centre, on a pixel centre; every field's
    restored image must peak on that pixel with the true flux, and its model
    must hold at least what ``NITER`` Hogbom iterations at gain 0.1 take off
    a point source, ``1 - 0.9**NITER`` of it.
    """
    from radio_clean.simulate import SkyComponent, simulate_ms

    _bps_environment(monkeypatch, tmp_path)
    truth = {}
    paths = []
    for index in range(N_FIELDS):
        name = f"F{index:02d}"
        offset = (index % 5 - 2, index // 5 - 2)  # (east, north) cells, -2 to +2
        sky = simulate_ms(
            str(tmp_path / f"{name}.ms"),
            [SkyComponent(0.2 + 0.05 * index, (offset[0] * CELL_ARCSEC, offset[1] * CELL_ARCSEC))],
            array="vla.d",
            phase_centre=(150.0 + 3.0 * index, 20.0),
            n_chan=1,
            hours=0.25,
            integration_s=120.0,
            field_name=name,
        )
        truth[name] = sky
        paths.append(sky.path)
    repo = str(tmp_path / "repo")
    command = [
        sys.executable, "-m", "radio_clean.cli", "campaign", repo, *paths, "-o", "survey/bps",
        "-c", f"parameters:imsize=[{IMSIZE}]", "-c", f"parameters:cell=['{CELL_ARCSEC}arcsec']",
        "-c", f"parameters:niter={NITER}", "-c", "parameters:weighting=natural",
        "-c", "parameters:datacolumn=data", "--bps", CAMPAIGN_LOCAL,
    ]  # fmt: skip
    assert subprocess.run([sys.executable, "-m", "radio_clean.cli", "create-repo", repo]).returncode == 0
    started = time.perf_counter()
    process = subprocess.run(command, capture_output=True, text=True, timeout=600)
    print(f"radio-clean campaign --bps, {N_FIELDS} fields: {time.perf_counter() - started:.0f} s")
    assert process.returncode == 0, process.stderr[-3000:]
    assert f"{N_FIELDS} of {N_FIELDS} chains converged, 0 failed, 0 remaining" in process.stdout
    steps = ("start", "cycle001", "finish002")
    for step in steps:
        assert f"survey/bps/{step}: " in process.stdout, step
        # Each step two jobs of ten chains each, not a job per field.
        jobs = tmp_path / "submit" / "survey" / "bps" / step / "logs" / "continuum" / "VLA"
        assert sorted(path.name for path in jobs.glob("*.stderr")) == [
            "continuum_VLA_001.stderr", "continuum_VLA_002.stderr"
        ], step  # fmt: skip

    with Butler.from_config(repo) as butler:
        summaries = {
            ref.dataId["field"]: butler.get(ref)
            for ref in butler.query_datasets("clean_summary", collections="survey/bps")
        }
        images = {
            ref.dataId["field"]: ref for ref in butler.query_datasets("image", collections="survey/bps")
        }
        models = {
            ref.dataId["field"]: ref for ref in butler.query_datasets("model_c2", collections="survey/bps")
        }
        assert sorted(images) == sorted(summaries) == sorted(truth)
        for name, sky in truth.items():
            summary = summaries[name]
            assert (summary["stopcode"], summary["iterdone"], summary["nmajordone"]) == (1, NITER, 2), name
            (component,) = sky.components
            image = butler.get(images[name])
            x, y, *_ = image.wcs.world_to_pixel_values(
                component.ra_deg, component.dec_deg, sky.ref_freq_hz, 1
            )
            x, y = round(float(x)), round(float(y))
            pixels = image.pixels[0, 0]
            # The restored image peaks on the true pixel, at the true flux.
            assert np.unravel_index(np.argmax(pixels), pixels.shape) == (y, x), name
            assert pixels[y, x] == pytest.approx(component.flux_jy, rel=0.02), name
            # The model is all on that pixel: at least what NITER Hogbom iterations at gain 0.1 take
            # off a point source, 1 - 0.9**NITER of it (0.65), and not all of it (CLEAN stopped at niter).
            model = butler.get(models[name]).pixels[0, 0]
            assert float(model.sum()) == pytest.approx(float(model[y, x]), rel=1e-6), name
            assert 1 - 0.9**NITER <= model[y, x] / component.flux_jy < 0.9, name
