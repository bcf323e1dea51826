"""Tests of the quick-look figures' sky axes."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from radio_clean.image import Beam, RadioImage, make_image_wcs
from radio_clean.quicklook import image_figure


def _sky_labels(ctype: tuple[str, str]) -> tuple[str, str]:
    """How the figure's two sky axes write the coordinates of the image centre."""
    wcs = make_image_wcs(
        ra_deg=187.7, dec_deg=12.4, cell_arcsec=8.0, nx=128, ny=128, frequency_hz=1.4e9, channel_width_hz=1e6,
        spectral_frame="LSRK",
    )  # fmt: skip
    wcs.wcs.ctype = [*ctype, *list(wcs.wcs.ctype)[2:]]
    if ctype[0].startswith("GLON"):
        wcs.wcs.radesys = ""
    wcs.wcs.set()
    pixels = np.random.default_rng(3).normal(size=(1, 1, 128, 128)).astype(np.float32)
    image = RadioImage(pixels, wcs, brightness_unit="Jy/beam", restoring_beam=Beam(30.0, 20.0, 10.0))
    figure = image_figure(image, title="test")
    FigureCanvasAgg(figure).draw()
    first, second = figure.axes[0].coords
    return first.format_coord(187.7), second.format_coord(12.4)


@pytest.mark.filterwarnings("ignore::astropy.wcs.FITSFixedWarning")
def test_sky_labels_are_plain_text():
    # Plain text, not mathtext: mathtext's parser and fonts cost every run a quarter of a second.
    assert _sky_labels(("RA---SIN", "DEC--SIN")) == ("12ʰ30ᵐ48ˢ", "12°24'")
    assert _sky_labels(("GLON-SIN", "GLAT-SIN")) == ("187°42'", "12°24'")
