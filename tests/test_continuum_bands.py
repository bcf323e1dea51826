"""MFS over several frequency set-ups (spectral windows, MSs): one image of all of them, as tclean makes.

Each set-up is a band of its own in the repository; ``specmode='mfs'`` images
the selected ones together in a band spanning them (`radio_clean.bands`),
while a cube is still made per set-up.
"""

import numpy as np
import pytest

from radio_clean.casa import read_casa_image, reattach_casa_log
from radio_clean.image import RadioImage
from radio_clean.imaging import image_measurement_sets, read_parameters
from radio_clean.simulate import SkyComponent, simulate_ms

SKY = [SkyComponent(1.0, (0.0, 0.0), spectral_index=-0.7), SkyComponent(0.3, (240.0, -120.0))]
TCLEAN = dict(imsize=[128], cell=["8arcsec"], niter=200, weighting="briggs", robust=0.0)
SETTINGS = ["imsize=128", "cell=8arcsec", "niter=200", "weighting=briggs", "robust=0"]


@pytest.fixture(scope="module")
def measurement_sets(tmp_path_factory):
    """Two spectral windows (1.400 and 1.464 GHz) in one MS; two MSs at 1.4 and 1.8 GHz."""
    directory = tmp_path_factory.mktemp("continuum_bands")
    common = dict(n_chan=4, chan_width_hz=16e6, hours=0.5, noise_jy=0.01)
    two_windows = str(directory / "two_windows.ms")
    simulate_ms(two_windows, SKY, n_spw=2, freq_start_hz=1.4e9, **common)
    low, high = str(directory / "low.ms"), str(directory / "high.ms")
    # One sky: fluxes are given at 1.6 GHz in both.
    simulate_ms(low, SKY, freq_start_hz=1.4e9, ref_freq_hz=1.6e9, seed=1, **common)
    simulate_ms(high, SKY, freq_start_hz=1.8e9, ref_freq_hz=1.6e9, seed=2, **common)
    return directory, two_windows, [low, high]


def _ours(directory, label, ms_paths, *settings):
    parameters, fields = read_parameters(None, [*SETTINGS, *settings])
    return image_measurement_sets(
        ms_paths,
        repo=str(directory / "repo"),
        export_dir=str(directory / label),
        parameters=parameters,
        fields=fields,
        output=f"images/{label}",
    )


def _tclean(directory, label, vis, **parameters):
    from casatasks import casalog, tclean

    summary = tclean(vis=vis, imagename=str(directory / label / "img"), **TCLEAN, **parameters)
    reattach_casa_log(casalog)
    return summary


def _assert_equal_to_tclean(run, tclean_summary, ours_image, tclean_image):
    (summary,) = run.summaries
    assert (summary["iterdone"], summary["nmajordone"], summary["stopcode"]) == (
        tclean_summary["iterdone"],
        tclean_summary["nmajordone"],
        tclean_summary["stopcode"],
    )
    theirs = read_casa_image(tclean_image)
    ours = RadioImage.from_fits(str(ours_image))
    peak = np.abs(theirs.pixels).max()
    assert peak > 0.5
    assert np.abs(ours.pixels - theirs.pixels).max() <= 1e-6 * peak


def test_mfs_images_every_spectral_window_of_an_ms_together(measurement_sets):
    directory, ms, _ = measurement_sets
    run = _ours(directory, "windows", [ms])
    (summary,) = run.summaries
    assert summary["band"] == "1400-1512MHz"
    tclean_summary = _tclean(directory, "tclean_windows", ms)
    _assert_equal_to_tclean(
        run, tclean_summary, directory / "windows/image.fits", str(directory / "tclean_windows/img.image")
    )


def test_mtmfs_over_two_measurement_sets_at_different_frequencies(measurement_sets):
    directory, _, pair = measurement_sets
    run = _ours(directory, "pair", pair, "deconvolver=mtmfs", "nterms=2")
    assert run.summaries[0]["band"] == "1400-1848MHz"
    tclean_summary = _tclean(directory, "tclean_pair", pair, deconvolver="mtmfs", nterms=2)
    _assert_equal_to_tclean(
        run, tclean_summary, directory / "pair/image.tt0.fits", str(directory / "tclean_pair/img.image.tt0")
    )
    # The spectral index of the bright source, across 1.4-1.85 GHz.
    alpha = RadioImage.from_fits(str(directory / "pair" / "alpha.fits")).pixels.squeeze()
    assert alpha[64, 64] == pytest.approx(-0.7, abs=0.05)


def test_spw_selection_within_the_span_and_of_one_window(measurement_sets):
    directory, ms, _ = measurement_sets
    run = _ours(directory, "channels", [ms], "spw=0:1~2,1")
    assert run.summaries[0]["band"] == "1400-1512MHz"
    tclean_summary = _tclean(directory, "tclean_channels", ms, spw="0:1~2,1")
    _assert_equal_to_tclean(
        run, tclean_summary, directory / "channels/image.fits", str(directory / "tclean_channels/img.image")
    )
    # One window selected: its own band, as before.
    run = _ours(directory, "second", [ms], "spw=1")
    assert [summary["band"] for summary in run.summaries] == ["1488MHz-4ch"]


def test_a_cube_is_made_per_spectral_window(measurement_sets):
    directory, ms, _ = measurement_sets
    run = _ours(directory, "cube", [ms], "specmode=cube", "niter=0")
    assert sorted(summary["band"] for summary in run.summaries) == ["1424MHz-4ch", "1488MHz-4ch"]
