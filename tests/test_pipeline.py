"""The shipped pipelines (one label per task; start, cycle and finish subsets) and radio-clean image."""

import collections
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from astropy.io import fits
from clean_utils import tree_checksums
from lsst.daf.butler import Butler

from radio_clean.casa import read_casa_image
from radio_clean.cli import main
from radio_clean.pipeline import STEPS, clean_pipeline, pipeline_for, shipped_pipelines, to_yaml

PIPELINES = os.path.join(os.path.dirname(__file__), os.pardir, "pipelines")


def test_shipped_pipelines_are_regenerated():
    for name, text in shipped_pipelines().items():
        with open(os.path.join(PIPELINES, name)) as stream:
            assert stream.read() == text, (
                f"pipelines/{name} is stale: run python -m radio_clean.pipeline pipelines"
            )


@pytest.mark.parametrize("show", ["config=makePsf", "pipeline-graph"])
def test_pipetask_build_shows_a_pipeline_without_a_repository(show):
    # As doc/pipeline.rst tells: radio_clean's universe on DAF_BUTLER_CONFIG_PATH.
    from radio_clean.repo import DIMENSIONS_CONFIG

    environment = {**os.environ, "DAF_BUTLER_CONFIG_PATH": os.path.dirname(DIMENSIONS_CONFIG)}
    pipeline = os.path.join(os.path.dirname(__file__), os.pardir, "pipelines", "ContinuumImaging.yaml")
    pipetask = os.path.join(os.path.dirname(sys.executable), "pipetask")
    result = subprocess.run(
        [pipetask, "build", "-p", pipeline, "--show", show], env=environment, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "makePsf" in result.stdout
    assert "Traceback" not in result.stderr


def test_pipeline_has_one_label_per_task_and_the_loop_in_subsets():
    pipeline = clean_pipeline("whole", {"niter": 10})
    assert list(pipeline["tasks"]) == ["makePsf", "majorCycle", "autoMask", "deconvolve", "restore"]
    assert {name: subset["subset"] for name, subset in pipeline["subsets"].items()} == {
        "start": ["makePsf", "majorCycle", "autoMask", "deconvolve"],
        "cycle": ["majorCycle", "autoMask", "deconvolve"],
        "finish": ["restore"],
    }
    assert tuple(pipeline["subsets"]) == STEPS
    # Consecutive labels have the same tclean parameters: every subset of consecutive tasks keeps its own.
    assert [contract["contract"] for contract in pipeline["contracts"]] == [
        "makePsf.parameters == majorCycle.parameters",
        "majorCycle.parameters == autoMask.parameters",
        "autoMask.parameters == deconvolve.parameters",
        "deconvolve.parameters == restore.parameters",
    ]
    assert pipeline["parameters"] == {"niter": 10, "major_cycle": "c0", "minor_cycle": "c1"}
    # Connection templates come from the loop's pipeline parameters, not from fixed cycles.
    assert pipeline["tasks"]["deconvolve"]["config"] == {
        "parameters.niter": "parameters.niter",
        "connections.cycle": "parameters.minor_cycle",
        "connections.previous": "parameters.major_cycle",
    }
    assert pipeline["tasks"]["majorCycle"]["config"]["connections.cycle"] == "parameters.major_cycle"
    assert pipeline["tasks"]["restore"]["config"]["connections.previous"] == "parameters.major_cycle"
    assert "ContinuumImaging" not in to_yaml(pipeline)
    by_observation = pipeline_for({"niter": 10}, n_observations=2)
    assert list(by_observation["tasks"]) == [
        "makePsf",
        "observationMajorCycle",
        "gatherResidual",
        "autoMask",
        "deconvolve",
        "restore",
    ]
    assert by_observation["subsets"]["cycle"]["subset"] == [
        "observationMajorCycle",
        "gatherResidual",
        "autoMask",
        "deconvolve",
    ]
    cube = pipeline_for({"specmode": "cube"})
    assert cube["subsets"]["cycle"]["subset"] == ["cubeMajorCycle", "cubeAutoMask", "cubeDeconvolve"]
    assert cube["tasks"]["cubeDeconvolve"]["config"]["channel_chunks"] is True
    with pytest.raises(ValueError, match="loop parameters"):
        clean_pipeline("whole", {"major_cycle": "c2"})
    with pytest.raises(ValueError, match="Unknown pipeline layout"):
        clean_pipeline("unrolled")


def _cycle_dataset_types(file_name, subset, **loop):
    """{label: (inputs, outputs)} of a shipped pipeline's subset: the dataset types of one cycle."""
    from lsst.pipe.base import Pipeline

    pipeline = Pipeline.from_uri(os.path.join(PIPELINES, file_name) + f"#{subset}")
    for name, value in loop.items():
        pipeline.addConfigOverride("parameters", name, value)
    graph = pipeline.to_graph()

    def of_cycles(edges):
        names = (edge.parent_dataset_type_name for edge in edges)
        return sorted(name for name in names if re.search(r"_c[0-9]+$", name))

    return {
        label: (of_cycles(task.inputs.values()), of_cycles(task.outputs.values()))
        for label, task in graph.tasks.items()
    }


def test_pipeline_parameters_place_a_step_in_the_loop():
    """major_cycle and minor_cycle resolve every connection template to that cycle's dataset types."""
    assert _cycle_dataset_types("ContinuumImaging.yaml", "start") == {
        "makePsf": ([], []),
        "majorCycle": ([], ["residual_c0"]),
        "autoMask": (["residual_c0"], ["mask_c1"]),
        "deconvolve": (["mask_c1", "residual_c0"], ["model_c1", "summary_c1"]),
    }
    assert _cycle_dataset_types("ContinuumImaging.yaml", "cycle", major_cycle="c3", minor_cycle="c4") == {
        "majorCycle": (["model_c3"], ["residual_c3"]),
        "autoMask": (["mask_c3", "model_c3", "residual_c3", "summary_c3"], ["mask_c4"]),
        "deconvolve": (["mask_c4", "model_c3", "residual_c3", "summary_c3"], ["model_c4", "summary_c4"]),
    }
    # The finish step of a chain that stopped at cycle 8: residual c7, model and summary c8.
    assert _cycle_dataset_types("ContinuumImaging.yaml", "finish", major_cycle="c7", minor_cycle="c8") == {
        "restore": (["model_c8", "residual_c7", "summary_c8"], []),
    }
    assert _cycle_dataset_types(
        "ContinuumImagingByObservation.yaml", "cycle", major_cycle="c3", minor_cycle="c4"
    ) == {
        "observationMajorCycle": (["model_c3"], ["partial_residual_c3"]),
        "gatherResidual": (["partial_residual_c3"], ["residual_c3"]),
        "autoMask": (["mask_c3", "model_c3", "residual_c3", "summary_c3"], ["mask_c4"]),
        "deconvolve": (["mask_c4", "model_c3", "residual_c3", "summary_c3"], ["model_c4", "summary_c4"]),
    }
    cube = _cycle_dataset_types("CubeImaging.yaml", "cycle", major_cycle="c3", minor_cycle="c4")
    assert cube["cubeMajorCycle"] == (["cube_model_c3"], ["cube_residual_c3"])
    assert cube["cubeDeconvolve"][1] == ["cube_model_c4", "cube_summary_c4"]


@pytest.fixture(scope="module")
def front_door_run(tmp_path_factory, demo_ms_dir):
    """One radio-clean image run of 3C273 (the CLEAN loop in-process), and tclean on the same data."""
    from casatasks import tclean

    root = tmp_path_factory.mktemp("frontdoor")
    ms = root / "3C273XC1.ms"
    shutil.copytree(demo_ms_dir / "3C273XC1.ms", ms)
    checksums = tree_checksums(ms)
    settings = [
        "imsize=128",
        "cell=1arcsec",
        "niter=300",
        "weighting=briggs",
        "robust=0.5",
        "datacolumn=data",
        "pbcor=True",
    ]
    status = main(
        ["image", str(ms), "--repo", str(root / "repo"), "--export", str(root / "out")]
        + [arg for setting in settings for arg in ("--set", setting)]
    )
    reference = tclean(
        vis=str(ms),
        imagename=str(root / "tclean" / "img"),
        imsize=[128],
        cell=["1arcsec"],
        niter=300,
        weighting="briggs",
        robust=0.5,
        datacolumn="data",
        pbcor=True,
    )
    return root, status, checksums, reference


def test_front_door_matches_tclean(front_door_run):
    root, status, _, reference = front_door_run
    assert status == 0
    out = root / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["iterdone"] == reference["iterdone"]
    assert summary["nmajordone"] == reference["nmajordone"]
    assert summary["stopcode"] == reference["stopcode"]
    assert summary["stop_reason"] == "iteration limit"
    assert len(summary["peak_residual_after_major_cycle"]) == reference["nmajordone"]
    tclean_image = read_casa_image(str(root / "tclean" / "img.image"))
    peak = np.abs(tclean_image.pixels).max()
    for name in ("image", "residual", "model", "psf", "pb", "image.pbcor"):
        ours = fits.getdata(out / f"{name}.fits")
        theirs = read_casa_image(str(root / "tclean" / f"img.{name}")).pixels
        assert ours.shape == theirs.shape == (1, 1, 128, 128)
        assert np.nanmax(np.abs(ours - theirs)) <= 1e-3 * peak, name
    header = fits.getheader(out / "image.fits")
    assert (header["CTYPE1"], header["CTYPE3"], header["CTYPE4"]) == ("RA---SIN", "FREQ", "STOKES")
    assert header["BUNIT"] == "Jy/beam"
    assert header["BMAJ"] * 3600 == pytest.approx(tclean_image.restoring_beam.major_arcsec, rel=1e-5)
    assert (out / "image.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "pipeline.yaml").exists()


def test_front_door_logs_hold_only_their_own_quantum(front_door_run):
    # The middleware's executor writes into each quantum's log the IDs of every quantum it ran before
    # in the process (previous_process_quanta): run by one executor, a step's N quanta would log N²/2
    # IDs, ~17 GB for a cycle step over 10,000 chains. The loop gives each quantum an executor of its own.
    root, status, _, _ = front_door_run
    assert status == 0
    with Butler.from_config(str(root / "repo")) as butler:
        refs = [
            ref
            for ref in butler.registry.queryDatasets(..., collections=...)
            if ref.datasetType.name.endswith("_log")
        ]
        logs = {ref: json.loads(butler.getURI(ref).read()) for ref in refs}
    by_run = collections.Counter(ref.run.rsplit("/", 1)[-1] for ref in refs)
    assert by_run["start"] >= 3 and by_run["cycle001"] >= 2  # several quanta a step: something to list
    assert [log["previous_process_quanta"] for log in logs.values()] == [[]] * len(logs)
    assert max(len(json.dumps(log)) for log in logs.values()) < 400


def test_front_door_leaves_ms_untouched(front_door_run):
    root, _, checksums, _ = front_door_run
    assert tree_checksums(root / "3C273XC1.ms") == checksums


@pytest.mark.parametrize(
    "settings, message",
    [
        (["weighting=robust"], "Value 'robust' of tclean parameter 'weighting' is not allowed"),
        (["cell=0.5Jy"], "Value '0.5Jy' of tclean parameter 'cell' is not allowed"),
        (["bogus=1"], "Unknown or unsupported tclean parameter 'bogus'"),
        (["niter=lots"], "Value 'lots' of tclean parameter 'niter' is not an integer."),
        (
            ["deconvolver=multiscale", "cell=1arcsec"],
            "parameters.scales is required with deconvolver=multiscale",
        ),
        (["cell"], "--set 'cell' is not of the form NAME=VALUE"),
        (
            ["usemask=auto-multithresh", "smoothfactor=0"],
            "Value '0' of tclean parameter 'smoothfactor' is not allowed: it must be above 0",
        ),
    ],
)
def test_bad_parameters_are_refused_before_any_work(tmp_path, demo_ms_dir, capsys, settings, message):
    repo = tmp_path / "repo"
    status = main(
        ["image", str(demo_ms_dir / "3C273XC1.ms"), "--repo", str(repo), "--export", str(tmp_path / "out")]
        + [arg for setting in settings for arg in ("--set", setting)]
    )
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith("radio-clean: error: ") and message in err and err.count("\n") == 1
    assert not repo.exists() and not (tmp_path / "out").exists()


def test_mock_tasks_run_with_pipetask_run_qbb(tmp_path, ms_3c273, capsys):
    # pre-exec-init-qbb and run-qbb read the graph (whose mock connections look up every storage class)
    # before the repository's config: the storage classes must be on DAF_BUTLER_CONFIG_PATH.
    from radio_clean.repo import DIMENSIONS_CONFIG

    repo = str(tmp_path / "repo")
    assert main(["create-repo", repo]) == 0
    assert main(["ingest", repo, ms_3c273]) == 0
    graph = str(tmp_path / "start.qg")
    env = dict(os.environ, DAF_BUTLER_CONFIG_PATH=os.path.dirname(DIMENSIONS_CONFIG))
    bin_dir = os.path.dirname(sys.executable)
    commands = [
        [f"{bin_dir}/pipetask", "qgraph", "-b", repo, "-p", f"{PIPELINES}/ContinuumImaging.yaml#start",
         "--mock", "--unmocked-dataset-types", "visibilities", "-i", "raw/visibilities", "-o", "mock/run",
         "--qgraph-datastore-records", "--save-qgraph", graph],
        [f"{bin_dir}/pipetask", "pre-exec-init-qbb", repo, graph],
        [f"{bin_dir}/pipetask", "run-qbb", repo, graph],
    ]  # fmt: skip
    for command in commands:
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
    # Every quantum of the start step ran (makePsf, majorCycle, deconvolve... for the one chain).
    executed = r"Executed (\d+) quanta successfully, 0 failed and 0 remain out of total (\d+)"
    done = re.search(executed, result.stderr)
    assert done and int(done[1]) == int(done[2]) >= 3, result.stderr[-3000:]
