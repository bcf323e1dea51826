"""CLEAN recovers skies whose truth the test wrote: fluxes, positions and spectral indices.

The MeasurementSets come from `radio_clean.simulate.simulate_ms` (visibilities
predicted analytically, Gaussian noise), imaged through ``radio-clean image``'s
own code path (`clean_utils.run_clean`: repository, ingest, the CLEAN
loop). Sources sit on pixel centres (offsets in whole cells from the phase
centre, which is the image centre), so that a point source's restored peak is
its flux. Each test works in its own ``tmp_path``; the module runs under
pytest-xdist.
"""

import math

import numpy as np
import pytest
from clean_utils import run_clean

from radio_clean.simulate import SkyComponent, simulate_ms

# isort: split
import casatools  # set up for offline use by conftest.py

IMSIZE = 128
FLUX_TOLERANCE = 0.02
APERTURE_PIXELS = 3
"""Radius of the aperture in which model flux is summed (the beam FWHM is ~6 pixels)."""


def _expected_noise(sky):
    """Thermal rms (Jy/beam) of a naturally weighted Stokes I image of ``sky``'s MS.

    Each unflagged (row, channel) gives I = (RR + LL) / 2, whose real part has
    rms noise / sqrt(2); averaging N of them with equal weights gives
    noise / sqrt(2 N).
    """
    table = casatools.table()
    try:
        table.open(sky.path)
        flags = table.getcol("FLAG")  # (correlation, channel, row)
        flag_rows = table.getcol("FLAG_ROW")
    finally:
        table.close()
    unflagged = np.count_nonzero(~(flags.any(axis=0) | flag_rows[np.newaxis, :]))
    return sky.noise_jy / math.sqrt(2.0 * unflagged)


def _clean(sky, parameters, directory):
    return run_clean([sky.path], parameters=parameters, directory=directory)


def _source_pixel(image, component, freq_hz):
    """(x, y) pixel of a true component; checked to be a pixel centre."""
    x, y, *_ = image.wcs.world_to_pixel_values(component.ra_deg, component.dec_deg, freq_hz, 1)
    x, y = float(x), float(y)
    assert abs(x - round(x)) < 1e-6 and abs(y - round(y)) < 1e-6, (
        f"component at {component.offset_arcsec} arcsec falls on pixel ({x}, {y}), not on a pixel centre"
    )
    return round(x), round(y)


def _aperture(x, y, radius=APERTURE_PIXELS):
    yy, xx = np.mgrid[:IMSIZE, :IMSIZE]
    return (xx - x) ** 2 + (yy - y) ** 2 <= radius**2


def test_point_source_fluxes_and_positions(tmp_path, monkeypatch):
    """Four point sources from 150 to 1000 mJy (> 200 sigma): flux and position recovered."""
    monkeypatch.chdir(tmp_path)
    cell = 8.0  # arcsec; the natural beam at 1.45 GHz in VLA-D is ~47 x 40 arcsec
    sources = [
        (1.0, (0, 0)),
        (0.4, (-20, 12)),
        (0.25, (30, -25)),
        (0.15, (-7, -30)),
    ]  # Jy, (east, north) cells
    sky = simulate_ms(
        str(tmp_path / "points.ms"),
        [SkyComponent(flux, (east * cell, north * cell)) for flux, (east, north) in sources],
        array="vla.d",
        freq_start_hz=1.4e9,
        chan_width_hz=32e6,
        n_chan=4,
        noise_jy=0.3,
        seed=7,
    )
    products = _clean(
        sky,
        {
            "imsize": [IMSIZE],
            "cell": [f"{cell}arcsec"],
            "niter": 3000,
            "nsigma": 3.0,
            "weighting": "natural",
            "datacolumn": "data",
            "deconvolver": "hogbom",
        },
        tmp_path / "ours",
    )
    summary = products["summary"]
    image, residual, model = (products[name].pixels[0, 0] for name in ("image", "residual", "model"))
    sigma = float(np.std(residual))
    expected_sigma = _expected_noise(sky)
    print(f"residual rms {sigma:.4g} Jy/beam, thermal {expected_sigma:.4g}; summary {summary['stop_reason']}")

    # CLEAN stopped on nsigma, not on niter, and the noise is the thermal noise of the data.
    assert summary["stopcode"] == 8, summary["stop_reason"]
    assert 0.7 < sigma / expected_sigma < 1.4

    apertures = np.zeros(image.shape, dtype=bool)
    for component in sky.components:
        x, y = _source_pixel(products["image"], component, sky.ref_freq_hz)
        aperture = _aperture(x, y)
        apertures |= aperture
        snr = component.flux_jy / sigma
        model_flux = float(model[aperture].sum())
        peak = float(image[y, x])
        print(
            f"{component.flux_jy} Jy at {component.offset_arcsec}: {snr:.0f} sigma, model sum "
            f"{model_flux:.5g} ({model_flux / component.flux_jy - 1:+.2%}), restored peak {peak:.5g} "
            f"({peak / component.flux_jy - 1:+.2%})"
        )
        assert snr > 50
        # The restored image peaks on the true pixel.
        local = np.where(aperture, image, -np.inf)
        assert np.unravel_index(np.argmax(local), image.shape) == (y, x)
        assert model_flux == pytest.approx(component.flux_jy, rel=FLUX_TOLERANCE)
        assert peak == pytest.approx(component.flux_jy, rel=FLUX_TOLERANCE)
    # Nearly all the model is on the sources: what is elsewhere is noise cleaned down to 3 sigma.
    stray = float(np.abs(model[~apertures]).sum())
    total = sum(component.flux_jy for component in sky.components)
    print(f"model |flux| outside the apertures: {stray:.4g} Jy")
    assert stray < 0.01 * total


def _taylor_fit(component, freqs, ref_freq_hz):
    """(tt0, tt1 / tt0) of the straight line fitted to the component's channel fluxes.

    With nterms=2 mtmfs models each source as S(nu) = tt0 + tt1 (nu - nu0) / nu0,
    fitted to the channel data (equal weights here: every channel has the same
    visibilities). For a power law over 1-2 GHz that line is not the flux at
    nu0: its intercept exceeds S(nu0) by alpha (alpha - 1) / 2 <x**2> (+2.2% for
    alpha = -0.7). This is the tt0 a perfect nterms=2 CLEAN gives.
    """
    x = (np.asarray(freqs) - ref_freq_hz) / ref_freq_hz
    slope, intercept = np.polyfit(x, component.flux_at(np.asarray(freqs)), 1)
    return float(intercept), float(slope / intercept)


def test_mtmfs_spectral_index_and_flux(tmp_path, monkeypatch):
    """Two point sources of spectral index -0.7 and +0.5 over 1-2 GHz: alpha within 0.05, tt0 within 2%."""
    monkeypatch.chdir(tmp_path)
    cell = 10.0  # arcsec; the natural beam over 1-2 GHz in VLA-D is ~58 x 50 arcsec
    sources = [(1.0, (0, 0), -0.7), (0.6, (-18, 14), 0.5)]  # Jy at 1.5 GHz, (east, north) cells, alpha
    sky = simulate_ms(
        str(tmp_path / "wideband.ms"),
        [
            SkyComponent(flux, (east * cell, north * cell), spectral_index=alpha)
            for flux, (east, north), alpha in sources
        ],
        array="vla.d",
        freq_start_hz=1.0625e9,
        chan_width_hz=125e6,
        n_chan=8,  # channel centres 1.0625 ... 1.9375 GHz: the band 1.0-2.0 GHz
        noise_jy=0.3,
        seed=11,
    )
    assert sky.ref_freq_hz == pytest.approx(1.5e9)
    sigma_expected = _expected_noise(sky)
    threshold_jy = 4.0 * sigma_expected
    products = _clean(
        sky,
        {
            "imsize": [IMSIZE],
            "cell": [f"{cell}arcsec"],
            "niter": 3000,
            "threshold": f"{threshold_jy!r}Jy",
            "weighting": "natural",
            "datacolumn": "data",
            "deconvolver": "mtmfs",
            "nterms": 2,
            "reffreq": f"{sky.ref_freq_hz!r}Hz",
        },
        tmp_path / "ours",
    )
    summary = products["summary"]
    assert summary["stopcode"] == 2, summary["stop_reason"]
    final = products["cycles"]
    image, residual, model, model_tt1, alpha = (
        products[name].pixels[0, 0] for name in ("image", "residual", "model", f"model_tt1_c{final}", "alpha")
    )
    sigma = float(np.std(residual))
    print(f"residual rms {sigma:.4g} Jy/beam, thermal {sigma_expected:.4g}")
    assert 0.7 < sigma / sigma_expected < 1.4
    freqs = sky.channel_freqs_hz[0]
    for component in sky.components:
        x, y = _source_pixel(products["image"], component, sky.ref_freq_hz)
        aperture = _aperture(x, y)
        tt0_expected, _ = _taylor_fit(component, freqs, sky.ref_freq_hz)
        model_tt0 = float(model[aperture].sum())
        model_alpha = float(model_tt1[aperture].sum()) / model_tt0
        peak, alpha_at_peak = float(image[y, x]), float(alpha[y, x])
        print(
            f"{component.flux_jy} Jy, alpha {component.spectral_index} at {component.offset_arcsec}: "
            f"{component.flux_jy / sigma:.0f} sigma; expected tt0 {tt0_expected:.5g}, "
            f"model tt0 {model_tt0:.5g} ({model_tt0 / tt0_expected - 1:+.2%}), "
            f"restored tt0 peak {peak:.5g} ({peak / tt0_expected - 1:+.2%}); "
            f"alpha image {alpha_at_peak:.4f}, model tt1/tt0 {model_alpha:.4f}"
        )
        assert component.flux_jy / sigma > 50
        assert model_tt0 == pytest.approx(tt0_expected, rel=FLUX_TOLERANCE)
        assert peak == pytest.approx(tt0_expected, rel=FLUX_TOLERANCE)
        assert alpha_at_peak == pytest.approx(component.spectral_index, abs=0.05)
        assert model_alpha == pytest.approx(component.spectral_index, abs=0.05)
