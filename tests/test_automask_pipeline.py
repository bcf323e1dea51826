"""AutoMaskTask end to end: the numpy auto-multithresh against CASA's mask handler and tclean."""

import shutil

import numpy as np
import pytest
from clean_utils import run_clean

from radio_clean.casa import read_casa_image

PARAMETERS = dict(
    imsize=[128],
    cell=["1arcsec"],
    niter=600,
    weighting="briggs",
    datacolumn="data",
    usemask="auto-multithresh",
)


@pytest.fixture(scope="module")
def runs(demo_ms_dir, tmp_path_factory):
    from casatasks import casalog, tclean

    from radio_clean.casa import reattach_casa_log

    ms = str(demo_ms_dir / "3C273XC1.ms")
    work = tmp_path_factory.mktemp("automask_runs")
    numpy_run = run_clean(
        [ms], parameters=PARAMETERS, directory=work / "numpy", automask_implementation="numpy"
    )
    casatools_run = run_clean(
        [ms], parameters=PARAMETERS, directory=work / "casatools", automask_implementation="casatools"
    )
    directory = tmp_path_factory.mktemp("tclean_automask")
    reference = tclean(vis=ms, imagename=str(directory / "img"), **PARAMETERS)
    reattach_casa_log(casalog)
    tclean_images = {
        kind: read_casa_image(str(directory / f"img.{kind}")) for kind in ("image", "mask", "model")
    }
    yield numpy_run, casatools_run, reference, tclean_images
    shutil.rmtree(directory, ignore_errors=True)


def test_numpy_mask_matches_casatools_mask_run(runs):
    numpy_run, casatools_run, _, _ = runs
    assert numpy_run["summary"]["stopcode"] == casatools_run["summary"]["stopcode"]
    peak = np.abs(casatools_run["image"].pixels).max()
    assert np.abs(numpy_run["image"].pixels - casatools_run["image"].pixels).max() <= 0.01 * peak


def test_numpy_mask_run_is_tclean(runs):
    numpy_run, _, reference, tclean_images = runs
    summary = numpy_run["summary"]
    assert (summary["iterdone"], summary["nmajordone"], summary["stopcode"]) == (
        reference["iterdone"],
        reference["nmajordone"],
        reference["stopcode"],
    )
    np.testing.assert_array_equal(numpy_run["mask"].pixels, tclean_images["mask"].pixels)
    peak = np.abs(tclean_images["image"].pixels).max()
    for kind in ("image", "model"):
        assert np.abs(numpy_run[kind].pixels - tclean_images[kind].pixels).max() <= 1e-3 * peak, kind


def test_mask_state_grows_and_never_shrinks(runs):
    numpy_run, _, _, _ = runs
    sizes = [int(numpy_run[f"mask_c{cycle}"].pixels.sum()) for cycle in range(1, numpy_run["cycles"] + 1)]
    assert sizes[0] > 0
    assert all(later >= earlier for earlier, later in zip(sizes, sizes[1:], strict=False))
