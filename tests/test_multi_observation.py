"""One field in two MeasurementSets: per-observation major cycles, gathered, against one MS and tclean."""

import os
import shutil

import numpy as np
import pytest

from radio_clean.casa import read_casa_image, reattach_casa_log
from radio_clean.image import RadioImage
from radio_clean.imaging import image_measurement_sets, read_parameters
from radio_clean.repo import open_repo

SETTINGS = ["imsize=128", "cell=1arcsec", "niter=500", "weighting=briggs", "robust=0", "datacolumn=data"]


def _split_by_time(ms, directory):
    """Cut an MS at its median time into two MSs (as if observed on two occasions)."""
    import casatools
    from casatasks import casalog, split

    table = casatools.table()
    table.open(ms)
    middle = float(np.median(table.getcol("TIME")))
    table.close()
    quanta = casatools.quanta()
    at = quanta.time(quanta.quantity(middle, "s"), form="ymd", prec=9)[0]
    parts = []
    for name, timerange in (("early", f"<{at}"), ("late", f">{at}")):
        path = os.path.join(directory, f"3C273_{name}.ms")
        split(vis=ms, outputvis=path, timerange=timerange, datacolumn="data")
        parts.append(path)
    reattach_casa_log(casalog)
    return parts


@pytest.fixture(scope="module")
def two_observations(demo_ms_dir, tmp_path_factory):
    directory = tmp_path_factory.mktemp("multi_observation")
    combined = str(directory / "3C273XC1.ms")
    shutil.copytree(demo_ms_dir / "3C273XC1.ms", combined)
    parts = _split_by_time(combined, str(directory))
    parameters, _ = read_parameters(None, SETTINGS)
    runs = {}
    for label, ms_paths, jobs in (("parts", parts, 2), ("combined", [combined], 1)):
        run = image_measurement_sets(
            ms_paths,
            repo=str(directory / "repo"),
            export_dir=str(directory / label),
            parameters=parameters,
            jobs=jobs,
            output=f"images/{label}",
        )
        runs[label] = (run, RadioImage.from_fits(str(directory / label / "image.fits")))
    from casatasks import casalog, tclean

    tclean_parameters = dict(imsize=[128], cell=["1arcsec"], niter=500, weighting="briggs", robust=0.0)
    summary = tclean(
        vis=parts, imagename=str(directory / "tclean" / "img"), datacolumn="data", **tclean_parameters
    )
    reattach_casa_log(casalog)
    return runs, summary, read_casa_image(str(directory / "tclean" / "img.image")), directory


def test_two_observations_equal_one_combined_ms_and_tclean(two_observations):
    runs, tclean_summary, tclean_image, _ = two_observations
    (parts_run, parts), (combined_run, combined) = runs["parts"], runs["combined"]
    peak = np.abs(tclean_image.pixels).max()
    assert np.abs(parts.pixels - combined.pixels).max() <= 1e-3 * peak
    assert np.abs(parts.pixels - tclean_image.pixels).max() <= 1e-3 * peak
    summary = parts_run.summaries[0]
    assert (summary["iterdone"], summary["nmajordone"], summary["stopcode"]) == (
        tclean_summary["iterdone"],
        tclean_summary["nmajordone"],
        tclean_summary["stopcode"],
    )
    assert combined_run.summaries[0]["iterdone"] == summary["iterdone"]


def test_each_observation_has_its_own_major_cycle(two_observations):
    runs, _, _, directory = two_observations
    run, _ = runs["parts"]
    with open_repo(str(directory / "repo"), collections=run.collection) as butler:
        shares = butler.query_datasets("partial_residual_c1", explain=False)
        weight_density = butler.query_datasets("weight_density", explain=False)
        assert len(shares) == 2 and len({ref.dataId["observation"] for ref in shares}) == 2
        assert len(weight_density) == 1
        # Each share is gridded with the weights of both observations: together, not alone, they
        # make the residual; either one alone holds about half the sum of weights' worth.
        share_peaks = [float(np.abs(butler.get(ref).pixels).max()) for ref in shares]
        assert all(peak > 0 for peak in share_peaks)
