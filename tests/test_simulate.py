"""Tests of radio_clean.simulate: the visibilities must carry exactly the sky we asked for."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from radio_clean.casa import CasaError
from radio_clean.cli import main
from radio_clean.simulate import SkyComponent, read_array_config, simulate_ms

# isort: split
import casatools  # set up for offline use by conftest.py

C = 299792458.0
ARCSEC = math.pi / (180 * 3600)


def read_vis(path):
    """Read DATA, UVW, FLAG, weights and per-row channel frequencies of an MS (not from the truth)."""
    table = casatools.table()
    metadata = casatools.msmetadata()
    try:
        table.open(path)
        vis = {
            name: table.getcol(name) for name in ("DATA", "UVW", "FLAG", "DATA_DESC_ID", "WEIGHT", "SIGMA")
        }
        vis["columns"] = table.colnames()
        table.close()
        table.open(os.path.join(path, "POLARIZATION"))
        vis["corr_types"] = table.getcell("CORR_TYPE", 0)
        metadata.open(path)
        spw_of = {dd: metadata.spwfordatadesc(dd) for dd in np.unique(vis["DATA_DESC_ID"])}
        vis["chan_freqs"] = {spw: metadata.chanfreqs(spw) for spw in spw_of.values()}
        # freqs[chan, row]
        vis["freqs"] = np.stack([vis["chan_freqs"][spw_of[dd]] for dd in vis["DATA_DESC_ID"]], axis=1)
    finally:
        table.close()
        metadata.close()
    return vis


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Directory shared by the module's simulations."""
    return tmp_path_factory.mktemp("sim")


@pytest.fixture(scope="module")
def centre_point(workdir):
    """Simulate a 1.5 Jy point source at the phase centre with the defaults."""
    sky = simulate_ms(str(workdir / "centre.ms"), [SkyComponent(1.5)])
    return sky, read_vis(sky.path)


@pytest.fixture(scope="module")
def offset_point(workdir):
    """Simulate 2 Jy, 90 arcsec east and 45 south, spectral index -0.7, in two windows."""
    # Two contiguous spectral windows over 1.4-1.91 GHz so the spectral index shows.
    sky = simulate_ms(
        str(workdir / "offset.ms"),
        [SkyComponent(2.0, offset_arcsec=(90.0, -45.0), spectral_index=-0.7)],
        n_spw=2,
        n_chan=4,
        chan_width_hz=64e6,
        ref_freq_hz=1.5e9,
    )
    return sky, read_vis(sky.path)


@pytest.fixture(scope="module")
def gaussian(workdir):
    """Simulate an elliptical Gaussian (40 x 20 arcsec, PA 30 deg) at the phase centre."""
    sky = simulate_ms(
        str(workdir / "gauss.ms"),
        [SkyComponent(1.0, shape="gaussian", major_arcsec=40.0, minor_arcsec=20.0, pa_deg=30.0)],
        n_chan=2,
    )
    return sky, read_vis(sky.path)


def noise_ms(workdir, name, seed, noise_jy=0.2):
    """Simulate a short, source-free observation with noise."""
    return simulate_ms(str(workdir / name), [], noise_jy=noise_jy, seed=seed, hours=0.25, n_chan=2)


def test_default_ms_layout(centre_point, workdir):
    """The default MS: 27 VLA antennas, 1 h at 60 s, RR/LL, 4 channels, DATA only."""
    sky, vis = centre_point
    n_baselines = 27 * 26 // 2
    assert sky.n_antennas == 27
    assert sky.n_rows == n_baselines * 60  # 1 hour of 60 s integrations
    assert vis["DATA"].shape == (2, 4, sky.n_rows)
    assert list(vis["corr_types"]) == [5, 8]  # RR, LL
    assert sky.correlations == ("RR", "LL")
    assert [c for c in ("DATA", "MODEL_DATA", "CORRECTED_DATA") if c in vis["columns"]] == ["DATA"]
    assert not vis["FLAG"].any()
    np.testing.assert_array_equal(vis["WEIGHT"], 1.0)
    np.testing.assert_allclose(vis["chan_freqs"][0], [1.4e9, 1.416e9, 1.432e9, 1.448e9], rtol=1e-12)
    assert sky.channel_freqs_hz == (tuple(vis["chan_freqs"][0]),)
    assert sky.ref_freq_hz == pytest.approx(1.424e9)  # band centre by default
    # No baseline is zero length, no autocorrelations.
    assert np.hypot(vis["UVW"][0], vis["UVW"][1]).min() > 10.0
    # Only the finished MSs in the directory: no temporary files.
    assert not [name for name in os.listdir(workdir) if name.startswith(".")]


def test_point_at_phase_centre(centre_point):
    """A point source at the phase centre gives V = S on every baseline."""
    sky, vis = centre_point
    data = vis["DATA"]
    for corr in range(2):
        assert data[corr].real.mean() == pytest.approx(1.5, rel=1e-4)
        np.testing.assert_allclose(data[corr].real, 1.5, rtol=1e-4)
        np.testing.assert_allclose(data[corr].imag, 0.0, atol=1.5e-4)
    assert sky.components[0].ra_deg == pytest.approx(187.5, abs=1e-12)
    assert sky.components[0].dec_deg == pytest.approx(10.0, abs=1e-12)


def test_offset_point_amplitude_and_phase(offset_point):
    """An offset point source gives |V| = S(nu) and the expected fringe phase."""
    sky, vis = offset_point
    data = vis["DATA"]
    expected = 2.0 * (vis["freqs"] / 1.5e9) ** -0.7  # [chan, row]
    el, em = 90.0 * ARCSEC, -45.0 * ARCSEC
    en = math.sqrt(1 - el * el - em * em)
    u, v, w = vis["UVW"]
    phase = 2 * np.pi * vis["freqs"] / C * (u * el + v * em + w * (en - 1))
    assert np.ptp(phase) > 20.0  # the source is far enough out for the phase to wind
    for corr in range(2):
        np.testing.assert_allclose(np.abs(data[corr]), expected, rtol=1e-4)
        # CASA's sign convention: V = S exp(+2 pi i (ul + vm + w(n-1))).
        np.testing.assert_allclose(data[corr], expected * np.exp(1j * phase), rtol=0, atol=2e-4)


def test_spectral_index(offset_point):
    """The amplitude per channel follows flux * (nu / nu0) ** alpha across both windows."""
    sky, vis = offset_point
    freqs = np.concatenate([vis["chan_freqs"][0], vis["chan_freqs"][1]])
    # Two contiguous windows of 4 x 64 MHz channels from 1.4 GHz.
    np.testing.assert_allclose(freqs, 1.4e9 + 64e6 * np.arange(8), rtol=1e-12)
    spw = np.array([0 if dd == 0 else 1 for dd in vis["DATA_DESC_ID"]])
    amplitude = np.concatenate(
        [np.abs(vis["DATA"][0][:, spw == 0]).mean(axis=1), np.abs(vis["DATA"][0][:, spw == 1]).mean(axis=1)]
    )
    expected = 2.0 * (freqs / 1.5e9) ** -0.7
    assert expected.max() / expected.min() > 1.2  # wide enough that a flat spectrum would fail
    np.testing.assert_allclose(amplitude, expected, rtol=1e-4)
    np.testing.assert_allclose(sky.flux_at(freqs), expected, rtol=1e-12)
    assert sky.components[0].flux_at(1.5e9) == pytest.approx(2.0)


def test_offset_truth_position(offset_point):
    """The recorded RA/Dec is the SIN-projection offset from the phase centre."""
    sky, _ = offset_point
    comp = sky.components[0]
    measures = casatools.measures()
    quanta = casatools.quanta()
    centre = measures.direction("J2000", "187.5deg", "10deg")
    where = measures.direction("J2000", f"{comp.ra_deg}deg", f"{comp.dec_deg}deg")
    separation = quanta.convert(measures.separation(centre, where), "arcsec")["value"]
    position_angle = quanta.convert(measures.posangle(centre, where), "deg")["value"]
    # SIN projection: sin(separation) = sqrt(l^2 + m^2); position angle east of north = atan2(l, m).
    assert math.sin(separation * ARCSEC) == pytest.approx(math.hypot(90.0, -45.0) * ARCSEC, rel=1e-9)
    assert position_angle == pytest.approx(math.degrees(math.atan2(90.0, -45.0)), abs=1e-6)
    assert comp.ra_deg > 187.5 and comp.dec_deg < 10.0  # east and south
    assert comp.direction.startswith("J2000 ")


def gaussian_visibility(u, v, flux, major, minor, pa_deg):
    """Return the analytic visibility of an elliptical Gaussian (FWHM in rad, u, v in wavelengths)."""
    pa = math.radians(pa_deg)
    u_major = u * math.sin(pa) + v * math.cos(pa)
    u_minor = u * math.cos(pa) - v * math.sin(pa)
    return flux * np.exp(-(np.pi**2) / (4 * np.log(2)) * (major**2 * u_major**2 + minor**2 * u_minor**2))


def test_gaussian_visibility(gaussian):
    """A Gaussian's amplitude falls with uv distance as its Fourier transform says."""
    sky, vis = gaussian
    u = vis["UVW"][0] * vis["freqs"] / C
    v = vis["UVW"][1] * vis["freqs"] / C
    major, minor = 40.0 * ARCSEC, 20.0 * ARCSEC
    amplitude = np.abs(vis["DATA"][0])
    expected = gaussian_visibility(u, v, 1.0, major, minor, 30.0)
    assert expected.min() < 0.2  # the source is well resolved on the longest baselines
    np.testing.assert_allclose(amplitude, expected, rtol=0.01)
    # A few uv distances along the major axis direction (PA 30 deg): compare the nearest samples.
    uvdist = np.hypot(u, v)
    along_major = np.abs(np.cos(np.arctan2(u, v) - math.radians(30.0)))
    for q in (500.0, 1000.0, 2000.0, 3000.0):
        pick = np.argmin(np.abs(uvdist - q) + 1e4 * (1 - along_major))
        analytic = math.exp(-((math.pi * major * uvdist.flat[pick]) ** 2) / (4 * math.log(2)))
        assert amplitude.flat[pick] == pytest.approx(analytic, rel=0.01, abs=0.002)
    # The position angle convention matters: the mirror-image Gaussian does not fit.
    wrong = gaussian_visibility(u, v, 1.0, major, minor, -30.0)
    assert np.abs(amplitude - wrong).max() > 0.1


def test_noise_level_and_weights(workdir):
    """The simplenoise sigma is the std of the real and of the imaginary parts."""
    sky = noise_ms(workdir, "noise.ms", seed=7)
    vis = read_vis(sky.path)
    data = vis["DATA"]
    assert data.size > 20000
    for part in (data.real, data.imag):
        assert part.std() == pytest.approx(0.2, rel=0.1)
        assert abs(part.mean()) < 5 * 0.2 / math.sqrt(part.size)
    # Each correlation gets its own noise.
    assert np.corrcoef(data[0].real.ravel(), data[1].real.ravel())[0, 1] < 0.05
    np.testing.assert_allclose(vis["SIGMA"], 0.2)
    np.testing.assert_allclose(vis["WEIGHT"], 25.0)


def test_noise_seed_reproducible(workdir):
    """The same seed gives the same noise; another seed gives other noise."""
    first = read_vis(noise_ms(workdir, "seed5a.ms", seed=5).path)["DATA"]
    again = read_vis(noise_ms(workdir, "seed5b.ms", seed=5).path)["DATA"]
    other = read_vis(noise_ms(workdir, "seed6.ms", seed=6).path)["DATA"]
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).mean() > 0.1


def test_noise_on_source(workdir):
    """Noise adds to the source without biasing it."""
    sky = simulate_ms(
        str(workdir / "noisy_source.ms"), [SkyComponent(3.0)], noise_jy=0.5, hours=0.25, n_chan=1
    )
    data = read_vis(sky.path)["DATA"]
    assert data.real.mean() == pytest.approx(3.0, abs=5 * 0.5 / math.sqrt(data.real.size))
    assert (data.real - 3.0).std() == pytest.approx(0.5, rel=0.1)


def test_full_polarisation(workdir):
    """Four correlations: parallel hands carry Stokes I, cross-hands are zero."""
    sky = simulate_ms(
        str(workdir / "fullpol.ms"), [SkyComponent(1.0)], correlations="LL RL RR LR", hours=0.1, n_chan=1
    )
    vis = read_vis(sky.path)
    assert sky.correlations == ("RR", "RL", "LR", "LL")
    assert list(vis["corr_types"]) == [5, 6, 7, 8]
    data = vis["DATA"]
    np.testing.assert_allclose(data[[0, 3]], 1.0, atol=1e-6)
    np.testing.assert_allclose(data[[1, 2]], 0.0, atol=1e-6)


PREDICT_WITH_DIRTY_HEAP = """
import sys
import numpy as np
from radio_clean.casa import set_up_casa
set_up_casa()
from radio_clean.simulate import SkyComponent, simulate_ms
import casatools

sky = simulate_ms(sys.argv[1], [SkyComponent(1.0, spectral_index=-0.7)], correlations=sys.argv[2],
                  hours=0.1, n_chan=2)
table = casatools.table()
table.open(sky.path)
data = table.getcol("DATA")
table.close()
print(int((~np.isfinite(data)).sum()), float(np.nan_to_num(np.abs(data[[1, 2]]), nan=np.inf).max()))
"""


@pytest.mark.parametrize("correlations", ["RR RL LR LL", "XX XY YX YY"])
def test_prediction_reads_no_uninitialised_memory(workdir, correlations):
    """Prediction writes every correlation itself, whatever freed memory holds.

    CASA's "spectral index" spectrum reads memory it never wrote when it samples Q and U
    of an unpolarised component: the cross-hands (and XX, YY) held NaN when the heap held
    NaN (test_full_polarisation failed now and then). glibc's MALLOC_PERTURB_ fills every
    fresh allocation with a fixed non-zero byte pattern, which makes that deterministic.
    """
    path = workdir / f"perturbed-{correlations[:2]}.ms"
    env = {**os.environ, "MALLOC_PERTURB_": "1"}
    result = subprocess.run(
        [sys.executable, "-c", PREDICT_WITH_DIRTY_HEAP, str(path), correlations],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    non_finite, max_cross = result.stdout.split()
    assert int(non_finite) == 0
    assert float(max_cross) < 1e-6


def test_mosaic_pointings(workdir):
    """Three pointings: three FIELD rows of one name, each phase-centred on itself, observed in turn."""
    offsets = [(0.0, 0.0), (600.0, 0.0), (0.0, -600.0)]
    sky = simulate_ms(
        str(workdir / "mosaic.ms"), [SkyComponent(1.0)], pointings=offsets, hours=0.1, integration_s=60.0
    )
    table = casatools.table()
    try:
        table.open(os.path.join(sky.path, "FIELD"))
        names = list(table.getcol("NAME"))
        phase_dirs = table.getcol("PHASE_DIR")[:, 0, :].T  # [field, (ra, dec)] radians
        table.close()
        table.open(sky.path)
        field_ids = table.getcol("FIELD_ID")
        times = table.getcol("TIME")
    finally:
        table.close()
    assert names == ["SIM", "SIM", "SIM"]
    # CASA stores RA in (-pi, pi].
    ra_dec = np.stack([np.degrees(phase_dirs[:, 0]) % 360.0, np.degrees(phase_dirs[:, 1])], axis=1)
    np.testing.assert_allclose(ra_dec, sky.pointings_deg, atol=1e-9)
    # 600 arcsec east at Dec 10 deg is 600 / cos(10 deg) arcsec of RA; 600 south is 600 of Dec.
    (ra0, dec0), (ra1, dec1), (ra2, dec2) = sky.pointings_deg
    assert (ra0, dec0) == pytest.approx((187.5, 10.0), abs=1e-9)
    assert (ra1 - ra0) * 3600 == pytest.approx(600.0 / math.cos(math.radians(10.0)), rel=1e-4)
    assert (dec2 - dec0) * 3600 == pytest.approx(-600.0, rel=1e-4)
    # Six integrations of 60 s, the pointings in turn: 0, 1, 2, 0, 1, 2.
    order = [int(field_ids[times == t][0]) for t in np.unique(times)]
    assert order == [0, 1, 2, 0, 1, 2]
    # Without a primary beam, a source at the mosaic centre has amplitude 1 in every pointing.
    np.testing.assert_allclose(np.abs(read_vis(sky.path)["DATA"]), 1.0, rtol=1e-4)


def test_too_many_pointings(workdir):
    """More pointings than integrations is refused."""
    with pytest.raises(ValueError, match="7 pointings need at least as many integrations"):
        simulate_ms(str(workdir / "few.ms"), [], pointings=[(0.0, 0.0)] * 7, hours=0.05, integration_s=60.0)
    assert not os.path.exists(workdir / "few.ms")


def test_alma_linear_feeds_and_local_coordinates(workdir):
    """LOC configurations are placed at the observatory; ALMA gets XX/YY."""
    config = read_array_config("alma.cycle10.1")
    assert config.telescope == "ALMA" and config.n_antennas == 43
    # LOC -> ITRF is a rotation plus a shift: baseline lengths are preserved.
    with open(config.path) as stream:
        rows = [line.split() for line in stream if line.strip() and not line.startswith("#")]
    local = np.array([[float(v) for v in row[:3]] for row in rows])
    itrf = np.array([config.x, config.y, config.z]).T
    for i, j in ((0, 1), (0, 42), (5, 30)):
        assert np.linalg.norm(itrf[i] - itrf[j]) == pytest.approx(
            np.linalg.norm(local[i] - local[j]), abs=1e-3
        )
    # ... and the array sits at the ALMA site (geocentric radius ~6375 km, latitude -23 deg).
    centre = itrf.mean(axis=0)
    assert math.degrees(math.asin(centre[2] / np.linalg.norm(centre))) == pytest.approx(-22.9, abs=0.2)

    sky = simulate_ms(
        str(workdir / "alma.ms"),
        [SkyComponent(0.3)],
        array="alma.cycle10.1",
        phase_centre=(150.0, -30.0),
        freq_start_hz=100e9,
        chan_width_hz=1e9,
        n_chan=1,
        hours=0.1,
    )
    vis = read_vis(sky.path)
    assert sky.telescope == "ALMA" and sky.correlations == ("XX", "YY")
    assert list(vis["corr_types"]) == [9, 12]  # XX, YY
    unflagged = ~vis["FLAG"]
    np.testing.assert_allclose(vis["DATA"][unflagged], 0.3, rtol=1e-4)


def test_primary_beam_attenuates(workdir):
    """primary_beam=True attenuates an off-axis source, more at higher frequency."""
    sky = simulate_ms(
        str(workdir / "pb.ms"),
        [SkyComponent(1.0, offset_arcsec=(600.0, 0.0))],
        primary_beam=True,
        hours=0.1,
        chan_width_hz=64e6,
    )
    amplitude = np.abs(read_vis(sky.path)["DATA"][0]).mean(axis=1)
    # VLA beam FWHM ~ 30' at 1.4 GHz: a source 10' out is attenuated to roughly 0.7-0.8 ...
    assert 0.6 < amplitude[0] < 0.9
    # ... and more so at higher frequency, where the beam is narrower.
    assert np.all(np.diff(amplitude) < -0.005)
    assert sky.primary_beam and sky.components[0].flux_jy == 1.0


def test_model_image(offset_point, workdir):
    """The model image puts the flux at the right pixel, per channel."""
    sky, _ = offset_point
    path = sky.write_model_image(
        str(workdir / "model.im"), imsize=64, cell_arcsec=5.0, channel_freqs_hz=[1.5e9, 1.6e9]
    )
    image = casatools.image()
    try:
        image.open(path)
        pixels = image.getchunk()
        assert pixels.shape == (64, 64, 1, 2)
        assert image.brightnessunit() == "Jy/pixel"
    finally:
        image.close()
    # 90" east, 45" south at 5"/pixel: RA increases to the left (lower x), Dec upwards.
    peak = np.unravel_index(np.argmax(pixels[:, :, 0, 0]), (64, 64))
    assert peak == (32 - 18, 32 - 9)
    np.testing.assert_allclose(pixels.sum(axis=(0, 1, 2)), [2.0, 2.0 * (1.6 / 1.5) ** -0.7], rtol=1e-5)


def test_component_list_round_trip(offset_point, workdir):
    """The truth written as a component list reads back the same."""
    sky, _ = offset_point
    path = sky.write_component_list(str(workdir / "truth.cl"))
    tool = casatools.componentlist()
    try:
        tool.open(path)
        assert tool.length() == 1
        assert tool.getfluxvalue(0)[0] == pytest.approx(2.0)
        # The spectral-index law as a one-term power-log-polynomial (see test_prediction_reads_...).
        spectrum = tool.getspectrum(0)
        assert spectrum["type"] == "Power Logarithmic Polynomial"
        np.testing.assert_allclose(spectrum["coeffs"], [-0.7])
    finally:
        tool.done()
    with pytest.raises(CasaError, match="already exists"):
        sky.write_component_list(path)


def test_existing_path_and_overwrite(workdir):
    """An existing MS is refused unless overwrite=True, which replaces it."""
    path = workdir / "exists.ms"
    simulate_ms(str(path), [SkyComponent(1.0)], hours=0.05, n_chan=1)
    with pytest.raises(CasaError, match="already exists"):
        simulate_ms(str(path), [SkyComponent(2.0)], hours=0.05, n_chan=1)
    assert read_vis(str(path))["DATA"].real.mean() == pytest.approx(1.0)
    simulate_ms(str(path), [SkyComponent(2.0)], hours=0.05, n_chan=1, overwrite=True)
    assert read_vis(str(path))["DATA"].real.mean() == pytest.approx(2.0)
    assert not [name for name in os.listdir(workdir) if name.startswith(".")]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"components": [SkyComponent(1.0)], "array": "no.such.array"},
            CasaError,
            "No antenna configuration",
        ),
        ({"components": [SkyComponent(1.0)], "correlations": "RR XX"}, ValueError, "correlations"),
        ({"components": [SkyComponent(1.0)], "phase_centre": "B1950 1h 2d"}, ValueError, "frame"),
        ({"components": [SkyComponent(1.0)], "noise_jy": -1.0}, ValueError, "noise_jy"),
        ({"components": [SkyComponent(1.0)], "seed": 0}, ValueError, "seed"),
        ({"components": [SkyComponent(1.0)], "n_chan": 0}, ValueError, "n_chan"),
        ({"components": [SkyComponent(1.0)], "array": "alma.out01"}, CasaError, "UTM"),
    ],
)
def test_bad_arguments(workdir, kwargs, error, match):
    """Bad arguments fail with a clear error and write nothing."""
    with pytest.raises(error, match=match):
        simulate_ms(str(workdir / "bad.ms"), **kwargs)
    assert not os.path.exists(workdir / "bad.ms")


def test_bad_components():
    """Invalid components are rejected when constructed."""
    with pytest.raises(ValueError, match="shape"):
        SkyComponent(1.0, shape="disk")
    with pytest.raises(ValueError, match="major_arcsec >= minor_arcsec"):
        SkyComponent(1.0, shape="gaussian", major_arcsec=1.0, minor_arcsec=2.0)
    with pytest.raises(ValueError, match="finite"):
        SkyComponent(float("nan"))


def test_simulate_command(tmp_path, capsys):
    """``radio-clean simulate``: the MS and its truth as asked, one line that says what was written."""
    ms, truth = tmp_path / "cli.ms", tmp_path / "cli.cl"
    sources = ["--source", "flux=1.5", "--source", "flux=0.5,east=30,major=20,minor=10"]
    status = main(["simulate", str(ms), *sources, "--hours", "0.1", "--nchan", "1", "--truth", str(truth)])
    assert status == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"Wrote {ms}: field SIM, 27 antennas (vla.d), 2106 rows, 1 channel 1.4000-1.4000 GHz; "
        "2 sources, 2 Jy in all.",
        f"True sky (CASA component list): {truth}",
    ]
    vis = read_vis(str(ms))
    assert vis["DATA"].shape == (2, 1, 2106)
    # The point source at the phase centre and the Gaussian's integrated flux on the shortest baselines.
    shortest = np.argsort(np.hypot(vis["UVW"][0], vis["UVW"][1]))[:20]
    assert np.abs(vis["DATA"][0, 0, shortest]).min() > 1.9
    components = casatools.componentlist()
    components.open(str(truth))
    try:
        fluxes = [components.getfluxvalue(i)[0] for i in range(components.length())]
        shapes = [components.shapetype(i) for i in range(components.length())]
    finally:
        components.done()
    assert fluxes == pytest.approx([1.5, 0.5]) and shapes == ["Point", "Gaussian"]


def test_simulate_command_refusals(tmp_path, capsys):
    """Bad sources, bad values and existing files: one sentence, nothing written or replaced."""
    ms, truth = tmp_path / "sky.ms", tmp_path / "sky.cl"
    for source, message in [
        ("flux=1,east=x", "east='x' in 'flux=1,east=x' is not a number."),
        ("east=3", "'east=3' has no flux=JY."),
        ("flux=1,size=3", "'size=3' in 'flux=1,size=3' is not one of flux=NUMBER"),
        ("flux=1,major=1,minor=2", "needs major_arcsec >= minor_arcsec > 0"),
    ]:
        with pytest.raises(SystemExit) as raised:
            main(["simulate", str(ms), "--source", source])
        assert raised.value.code == 2
        assert message in capsys.readouterr().err
    assert main(["simulate", str(ms), "--source", "flux=1", "--nchan", "0"]) == 1
    assert capsys.readouterr().err == (
        f"radio-clean: error: Cannot simulate {ms}: n_chan (0) and n_spw (1) must be at least 1.\n"
    )
    truth.mkdir()
    assert main(["simulate", str(ms), "--source", "flux=1", "--truth", str(truth)]) == 1
    assert capsys.readouterr().err == f"radio-clean: error: {truth} exists; --overwrite replaces it.\n"
    assert sorted(os.listdir(tmp_path)) == ["sky.cl"]
