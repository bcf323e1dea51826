"""The shipped pipeline, pipetask and the radio-clean image front door, end to end."""

import json
import os
import shutil

import numpy as np
import pytest
from astropy.io import fits

from radio_clean.casa import read_casa_image
from radio_clean.cli import main
from radio_clean.pipeline import DEFAULT_CYCLES, continuum_pipeline, shipped_pipelines, to_yaml
from radio_clean.testing import tree_checksums

PIPELINES = os.path.join(os.path.dirname(__file__), os.pardir, "pipelines")


def test_shipped_pipelines_are_regenerated():
    for name, text in shipped_pipelines().items():
        with open(os.path.join(PIPELINES, name)) as stream:
            assert stream.read() == text, (
                f"pipelines/{name} is stale: run python -m radio_clean.pipeline pipelines"
            )


def test_pipeline_unrolls_cycles():
    pipeline = continuum_pipeline(3, {"niter": 10})
    labels = list(pipeline["tasks"])
    assert labels == [
        "makePsf",
        "majorCycle_c0",
        "autoMask_c1",
        "deconvolve_c1",
        "majorCycle_c1",
        "autoMask_c2",
        "deconvolve_c2",
        "majorCycle_c2",
        "autoMask_c3",
        "deconvolve_c3",
        "majorCycle_c3",
        "restore",
    ]
    assert pipeline["tasks"]["deconvolve_c2"]["config"] == {
        "parameters.niter": "parameters.niter",
        "connections.cycle": "c2",
        "connections.previous": "c1",
    }
    assert pipeline["tasks"]["restore"]["config"]["connections.previous"] == "c3"
    assert "ContinuumImaging" not in to_yaml(pipeline)
    with pytest.raises(ValueError, match="at least one cycle"):
        continuum_pipeline(0)
    assert DEFAULT_CYCLES >= 10


@pytest.fixture(scope="module")
def front_door_run(tmp_path_factory, demo_ms_dir):
    """One radio-clean image run of 3C273 through pipetask, and tclean on the same data."""
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
        ["image", str(ms), "--repo", str(root / "repo"), "--export", str(root / "out"), "--cycles", "8"]
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


def test_front_door_leaves_ms_untouched(front_door_run):
    root, _, checksums, _ = front_door_run
    assert tree_checksums(root / "3C273XC1.ms") == checksums


@pytest.mark.parametrize(
    "settings, message",
    [
        (["weighting=robust"], "Value 'robust' of tclean parameter 'weighting' is not allowed"),
        (["cell=0.5"], "Value '0.5' of tclean parameter 'cell' is not allowed"),
        (["bogus=1"], "Unknown or unsupported tclean parameter 'bogus'"),
        (["niter=lots"], "Value 'lots' of tclean parameter 'niter' is not an integer."),
        (
            ["deconvolver=multiscale", "cell=1arcsec"],
            "parameters.scales is required with deconvolver=multiscale",
        ),
        (["cell"], "--set 'cell' is not of the form NAME=VALUE"),
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
