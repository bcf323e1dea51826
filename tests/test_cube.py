"""Spectral cubes (specmode='cube') on the calibrated VLA NGC5921 HI data, against tclean."""

import numpy as np
import pytest
from clean_utils import run_clean

from radio_clean.casa import read_casa_image
from radio_clean.image import PlaneBeams

PARAMETERS = dict(
    imsize=[96],
    cell=["15arcsec"],
    specmode="cube",
    niter=300,
    threshold="5mJy",
    weighting="briggs",
    datacolumn="data",
)


@pytest.fixture(scope="module", params=["user", "auto-multithresh"])
def cube_runs(request, ngc5921_prepared, tmp_path_factory):
    from casatasks import casalog, tclean

    from radio_clean.casa import reattach_casa_log

    ms = ngc5921_prepared.line_ms

    parameters = dict(PARAMETERS, usemask=request.param)
    ours = run_clean([ms], parameters=parameters, directory=tmp_path_factory.mktemp(f"ours_{request.param}"))
    directory = tmp_path_factory.mktemp(f"tclean_cube_{request.param}")
    reference = tclean(vis=ms, imagename=str(directory / "img"), **parameters)
    reattach_casa_log(casalog)
    images = {
        kind: read_casa_image(str(directory / f"img.{kind}"))
        for kind in ("image", "residual", "model", "mask")
    }
    return ours, reference, images


def test_every_channel_matches_tclean(cube_runs):
    ours, reference, images = cube_runs
    peak = np.nanmax(np.abs(images["image"].pixels))
    assert ours["image"].pixels.shape == (1, 63, 96, 96)
    for kind in ("image", "residual", "model"):
        difference = np.nanmax(np.abs(ours[kind].pixels - images[kind].pixels), axis=(0, 2, 3))
        assert difference.max() <= 1e-3 * peak, (kind, int(difference.argmax()))
    np.testing.assert_array_equal(ours["mask"].pixels, images["mask"].pixels)
    summary = ours["summary"]
    assert (summary["iterdone"], summary["nmajordone"], summary["stopcode"]) == (
        reference["iterdone"],
        reference["nmajordone"],
        reference["stopcode"],
    )


def test_per_channel_beams_match_tclean(cube_runs):
    ours, _, images = cube_runs
    beams, theirs = ours["image"].restoring_beam, images["image"].restoring_beam
    assert isinstance(beams, PlaneBeams) and beams.n_chan == 63
    for name in ("major_arcsec", "minor_arcsec", "pa_deg"):
        np.testing.assert_allclose(getattr(beams, name), getattr(theirs, name), rtol=1e-3)
    # VLA D configuration at 1.4 GHz: close to a minute of arc, a little wider with frequency falling.
    assert 40 < np.median(beams.major_arcsec) < 90
    assert not np.all(beams.major_arcsec == beams.major_arcsec[0])


def test_channel_selection_matches_tclean(ngc5921_prepared, tmp_path):
    """``spw=':20~40'`` selects those channels of the band, as tclean's ``spw='0:20~40'`` does."""
    from casatasks import casalog, tclean

    from radio_clean.casa import reattach_casa_log

    ms = ngc5921_prepared.line_ms

    parameters = dict(imsize=[64], cell=["15arcsec"], niter=100, datacolumn="data")
    ours = run_clean([ms], parameters=dict(parameters, spw=":20~40"), directory=tmp_path / "ours")
    tclean(vis=ms, imagename=str(tmp_path / "img"), spw="0:20~40", **parameters)
    reattach_casa_log(casalog)
    theirs = read_casa_image(str(tmp_path / "img.image"))
    peak = np.abs(theirs.pixels).max()
    assert np.abs(ours["image"].pixels - theirs.pixels).max() <= 1e-3 * peak
    # The HI line alone: the channel range changes the image (and its frequency) a lot.
    assert ours["image"].frequencies[0] == pytest.approx(theirs.frequencies[0])


@pytest.mark.parametrize(
    ("specmode", "outframe", "specsys"), [("cubedata", "LSRK", ""), ("cube", "BARY", "BARYCENT")]
)
def test_spectral_frame_matches_tclean(ngc5921_prepared, tmp_path, specmode, outframe, specsys):
    """``cubedata`` (the data's frequencies, in no frame) and a cube in another frame than LSRK.

    Both failed before: a frameless image could not be read, and CASA's major cycle converts the
    frame of the images it is given only for a telescope it finds by name.
    """
    from casatasks import casalog, tclean

    from radio_clean.casa import reattach_casa_log

    ms = ngc5921_prepared.line_ms

    parameters = dict(
        imsize=[64], cell=["15arcsec"], niter=100, datacolumn="data", specmode=specmode, outframe=outframe
    )
    ours = run_clean([ms], parameters=dict(parameters, spw=":20~30"), directory=tmp_path / "ours")
    reference = tclean(vis=ms, imagename=str(tmp_path / "img"), spw="0:20~30", **parameters)
    reattach_casa_log(casalog)
    theirs = {kind: read_casa_image(str(tmp_path / f"img.{kind}")) for kind in ("image", "residual")}
    peak = np.abs(theirs["image"].pixels).max()
    assert ours["image"].pixels.shape == (1, 11, 64, 64)
    for kind in ("image", "residual"):
        assert np.abs(ours[kind].pixels - theirs[kind].pixels).max() <= 1e-3 * peak, kind
    assert ours["image"].spectral_frame == theirs["image"].spectral_frame == specsys
    np.testing.assert_array_equal(ours["image"].frequencies, theirs["image"].frequencies)
    summary = ours["summary"]
    assert (summary["iterdone"], summary["nmajordone"], summary["stopcode"]) == (
        reference["iterdone"],
        reference["nmajordone"],
        reference["stopcode"],
    )
