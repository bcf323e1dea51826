"""Tests of radio_clean.automask: each stage by hand, and the whole against tclean's own masks.

tclean saves the residual that goes into every minor cycle and the mask that
cycle used (``SAVE_ALL_RESIMS`` / ``SAVE_ALL_AUTOMASKS``). Starting from an
empty state, `auto_multithresh` is fed those residuals one cycle after the
other, carrying only its own `AutoMaskState`, and must give the same masks.
"""

import contextlib
import dataclasses
import glob
import math
import os
import re

import numpy as np
import pytest
from scipy import ndimage

from radio_clean.automask import (
    AutoMaskParameters,
    AutoMaskState,
    PixelBeam,
    PlaneStatistics,
    auto_multithresh,
    chauvenet_statistics,
    fft_convolve_same,
    gaussian_kernel,
    grow_mask,
    plane_statistics,
    plane_thresholds,
    prune_regions,
    smooth_and_cut,
    threshold_mask,
)

# ---------------------------------------------------------------------------------------------
# Stages, on small images with answers worked out by hand
# ---------------------------------------------------------------------------------------------


def test_threshold_mask_strict_and_negative_rule():
    plane = np.array([[-3.0, -2.0, 0.0], [1.0, 2.0, 3.0]], dtype=np.float32)
    # Strictly above a non-negative threshold: 2.0 itself is out.
    assert threshold_mask(plane, 2.0).tolist() == [[False, False, False], [False, False, True]]
    # A negative threshold selects what lies below it (CASA's makeMaskByPerChanThreshold).
    assert threshold_mask(plane, -2.0).tolist() == [[True, False, False], [False, False, False]]
    assert threshold_mask(plane, 0.0).sum() == 3


def test_plane_statistics_median_mad_and_exclusions():
    plane = np.array([[1.0, 2.0, 3.0], [4.0, 100.0, -50.0]], dtype=np.float32)
    stats = plane_statistics(plane)
    # median of (-50, 1, 2, 3, 4, 100) = 2.5; |x - 2.5| = 52.5, 1.5, .5, .5, 1.5, 97.5 -> MAD = 1.5
    assert (stats.max, stats.min, stats.median, stats.mad, stats.npix) == (100.0, -50.0, 2.5, 1.5, 6)
    assert stats.rms == pytest.approx(1.5 * 1.4826)
    assert stats.peak == 100.0
    valid = np.array([[True, True, True], [True, False, False]])
    stats = plane_statistics(plane, valid)
    assert (stats.max, stats.min, stats.median, stats.mad, stats.npix) == (4.0, 1.0, 2.5, 1.0, 4)
    # Without fastnoise the mask is left out of the median and MAD, but not out of max/min.
    exclude = np.array([[False, False, False], [False, True, True]])
    stats = plane_statistics(plane, fastnoise=False, exclude=exclude)
    assert (stats.max, stats.min, stats.median, stats.npix) == (100.0, -50.0, 2.5, 4)
    assert math.isnan(plane_statistics(plane, np.zeros_like(valid)).median)


def test_chauvenet_clips_outliers_only():
    rng = np.random.default_rng(3)
    data = rng.normal(0.0, 1.0, 5000)
    kept = chauvenet_statistics(np.concatenate([data, [40.0, -35.0]]))
    assert 40.0 not in kept and -35.0 not in kept
    # Chauvenet's criterion at n = 5000 clips beyond ~3.9 sigma: almost nothing of the Gaussian goes.
    assert 4990 <= kept.size <= 5000


def test_plane_thresholds_by_hand():
    params = AutoMaskParameters(negativethreshold=4.0)
    stats = PlaneStatistics(max=10.0, min=-12.0, median=0.5, mad=2.0, npix=100)
    thr = plane_thresholds(stats, 0.1, params)
    rms = 2.0 * 1.4826
    # Peak is |min| = 12: sidelobe = 3 * 0.1 * 12 = 3.6, noise = 5 * 2.9652 = 14.826.
    assert thr.sidelobe == pytest.approx(3.6 + 0.5, rel=1e-6)
    assert thr.noise == pytest.approx(5 * rms + 0.5, rel=1e-6)
    assert thr.low_noise == pytest.approx(1.5 * rms + 0.5, rel=1e-6)
    assert thr.mask == thr.noise and thr.kind == "noise"
    assert thr.low == thr.low_noise
    assert thr.negative == pytest.approx(-4.0 * rms + 0.5, rel=1e-6)
    # A bright plane switches to the sidelobe threshold.
    bright = PlaneStatistics(max=1000.0, min=-1.0, median=0.0, mad=2.0, npix=100)
    thr = plane_thresholds(bright, 0.1, params)
    assert thr.kind == "sidelobe" and thr.mask == pytest.approx(300.0)
    assert thr.low == pytest.approx(300.0) and thr.negative == pytest.approx(-300.0)


def test_prune_regions_four_connected():
    mask = np.zeros((8, 8), dtype=bool)
    mask[0:2, 0:2] = True  # 4 pixels
    mask[5, 5] = mask[6, 6] = True  # diagonal neighbours: two 1-pixel regions
    mask[3, 3:7] = True  # 4 pixels in a row... plus one below: 5 pixels
    mask[4, 3] = True
    pruned, n_regions, n_removed = prune_regions(mask, 4.0)
    assert (n_regions, n_removed) == (4, 2)
    assert pruned.sum() == 9 and not pruned[5, 5] and not pruned[6, 6]
    # A region of exactly the prune size stays; 4.5 removes the 2x2 square too.
    pruned, _, n_removed = prune_regions(mask, 4.5)
    assert n_removed == 3 and pruned.sum() == 5
    assert prune_regions(mask, 0.0)[0].sum() == mask.sum()
    assert prune_regions(np.zeros((4, 4), dtype=bool), 3.0)[1:] == (0, 0)


@pytest.mark.parametrize(
    "image_shape, kernel_shape",
    [((37, 53), (9, 9)), ((1, 40), (7, 7)), ((40, 1), (7, 7)), ((16, 16), (1, 1)), ((5, 5), (11, 11))],
)
def test_fft_convolve_same_equals_scipy_signal(image_shape, kernel_shape):
    from scipy import signal

    rng = np.random.default_rng(7)
    image = (rng.random(image_shape) > 0.7).astype(np.float32)
    kernel = rng.random(kernel_shape).astype(np.float32)
    expected = signal.fftconvolve(image, kernel, mode="same")
    got = fft_convolve_same(image, kernel)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


def test_gaussian_kernel_shape_and_orientation():
    k = gaussian_kernel(PixelBeam(8.0, 4.0, 0.0))
    h = k.shape[0] // 2
    assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
    # 5 sigma of the major axis: 5 * 8 / 2.3548 = 16.99 -> 17 pixels each side.
    assert h == 17
    assert k[h, h] == 1.0
    # PA 0: major axis along y (north); half maximum at half the FWHM.
    assert k[h + 4, h] == pytest.approx(0.5) and k[h, h + 2] == pytest.approx(0.5)
    # PA 90: major axis east-west.
    k90 = gaussian_kernel(PixelBeam(8.0, 4.0, 90.0))
    assert k90[h, h + 4] == pytest.approx(0.5) and k90[h + 2, h] == pytest.approx(0.5)
    # PA 45 points north-east, and east is -x: the major axis runs through (y, x) = (+1, -1).
    k45 = gaussian_kernel(PixelBeam(8.0, 4.0, 45.0))
    assert k45[h + 3, h - 3] > 0.4 > 0.05 > k45[h + 3, h + 3]


def test_smooth_and_cut_single_pixel_by_hand():
    mask = np.zeros((21, 21), dtype=bool)
    mask[10, 10] = True
    out = smooth_and_cut(mask, PixelBeam(4.0, 4.0), 0.3)
    # Kept where exp(-4 ln2 d^2 / 16) > 0.3, i.e. d^2 < 6.95: d^2 in {0, 1, 2, 4, 5} -> 1+4+4+4+8 pixels.
    assert out.sum() == 21
    yy, xx = np.mgrid[:21, :21]
    d2 = (yy - 10) ** 2 + (xx - 10) ** 2
    assert np.array_equal(out, d2 <= 5)
    assert not smooth_and_cut(np.zeros((9, 9), dtype=bool), PixelBeam(3.0, 3.0), 0.01).any()


def test_smooth_and_cut_at_the_edges_equals_direct_convolution():
    rng = np.random.default_rng(11)
    mask = np.zeros((40, 50), dtype=bool)
    mask[0:3, 0:2] = True  # in a corner
    mask[20, 47:50] = True  # on an edge
    mask[rng.integers(0, 40, 5), rng.integers(0, 50, 5)] = True
    beam = PixelBeam(6.0, 3.0, 60.0)
    kernel = gaussian_kernel(beam)
    direct = ndimage.convolve(mask.astype(np.float64), kernel, mode="constant", cval=0.0)
    expected = direct > 0.02 * direct.max()
    assert np.array_equal(smooth_and_cut(mask, beam, 0.02), expected)
    assert 40 < expected.sum() < mask.size


def test_grow_mask_constrained_dilation():
    seed = np.zeros((7, 12), dtype=bool)
    constraint = np.zeros_like(seed)
    constraint[3, 1:11] = True  # a row of 10 pixels
    constraint[0:2, 0:2] = True  # a separate island
    constraint[4, 11] = True  # diagonal to the row's end: not 4-connected to it
    seed[3, 5] = True
    seed[6, 6] = True  # outside the constraint: dropped
    grown = grow_mask(seed, constraint, 3)
    assert grown.sum() == 7 and grown[3, 2:9].all()
    full = grow_mask(seed, constraint, 75)
    assert full.sum() == 10 and not full[0:2, 0:2].any() and not full[4, 11] and not full[6, 6]
    assert not grow_mask(seed, np.zeros_like(seed), 5).any()


def _noise_plane(shape, sigma, seed):
    return np.random.default_rng(seed).normal(0.0, sigma, shape).astype(np.float32)


def _blob(shape, centre, amplitude, fwhm):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    r2 = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2
    return (amplitude * np.exp(-4 * math.log(2) * r2 / fwhm**2)).astype(np.float32)


def test_negative_mask_and_positive_mask_kept_apart():
    shape = (64, 64)
    plane = _noise_plane(shape, 0.01, 1) + _blob(shape, (20, 20), 1.0, 4.0)
    plane += _blob(shape, (44, 44), -0.5, 4.0)
    beam = PixelBeam(4.0, 4.0)
    params = AutoMaskParameters(negativethreshold=5.0)
    mask, state = auto_multithresh(plane, psf_sidelobe_level=0.05, beam=beam, params=params)
    assert mask.shape == shape
    assert mask[20, 20] and mask[44, 44]
    # The positive (emission) mask carries the source, never the negative feature.
    assert state.positive_mask[0, 0, 20, 20] and not state.positive_mask[0, 0, 44, 44]
    assert not state.positive_mask[0, 0, 36:52, 36:52].any()
    # Without negativethreshold the negative feature is not masked.
    mask, _ = auto_multithresh(plane, psf_sidelobe_level=0.05, beam=beam)
    assert mask[20, 20] and not mask[44, 44]


def test_cube_channels_flags_growth_and_state_round_trip():
    shape = (1, 3, 48, 48)
    cube = np.stack([_noise_plane(shape[2:], 0.01, s) for s in range(3)])[np.newaxis]
    cube[0, 1] += _blob(shape[2:], (24, 24), 1.0, 4.0)
    cube[0, 2] += _blob(shape[2:], (24, 24), 0.3, 4.0)
    beam = PixelBeam(4.0, 4.0)
    mask1, state1 = auto_multithresh(cube, psf_sidelobe_level=0.05, beam=beam)
    # Channel 0 has no emission: noise threshold, empty mask -> masking stops there for good.
    assert state1.channel_flags.tolist() == [True, False, False]
    assert not mask1[0, 0].any() and mask1[0, 1, 24, 24] and mask1[0, 2, 24, 24]
    assert np.array_equal(state1.positive_mask, mask1) and np.array_equal(state1.previous_mask, mask1)
    # Channel 1 cut at the sidelobe threshold 3 * 0.05 * 1.0: a small core, smoothed by the beam.
    core = int(mask1[0, 1].sum())
    assert 100 < core < 300

    arrays = state1.to_arrays()
    assert {k: v.dtype for k, v in arrays.items()} == dict.fromkeys(arrays, np.dtype(bool))
    restored = AutoMaskState.from_arrays({k: v.copy() for k, v in arrays.items()})

    # Next cycle: the source is mostly cleaned and a faint plateau shows around it (3 sigma):
    # below the noise threshold (5 sigma), above the low-noise one (1.5 sigma).
    cube2 = cube.copy()
    cube2[0, 1] += _blob(shape[2:], (24, 24), -0.9, 4.0) + _blob(shape[2:], (24, 24), 0.03, 20.0)
    cube2[0, 0] += _blob(shape[2:], (10, 10), 1.0, 4.0)  # appears in a stopped channel: ignored
    no_grow, _ = auto_multithresh(cube2, psf_sidelobe_level=0.05, beam=beam, state=restored, iteration_done=0)
    grown, state2 = auto_multithresh(
        cube2, psf_sidelobe_level=0.05, beam=beam, state=restored, iteration_done=100
    )
    assert not grown[0, 0].any()
    # A mask never loses pixels; the grow stage (only once iterations were done) takes in the plateau.
    assert np.all(grown >= mask1) and np.all(no_grow >= mask1)
    assert grown[0, 1].sum() > no_grow[0, 1].sum() + 50
    one_step, _ = auto_multithresh(
        cube2,
        psf_sidelobe_level=0.05,
        beam=beam,
        state=restored,
        iteration_done=100,
        params=AutoMaskParameters(growiterations=1),
    )
    assert no_grow[0, 1].sum() <= one_step[0, 1].sum() < grown[0, 1].sum()
    assert np.array_equal(state2.previous_mask, grown)
    # The input state is left alone.
    assert np.array_equal(restored.previous_mask, mask1)


def test_minpercentchange_stops_settled_channels():
    shape = (1, 1, 40, 40)
    plane = _noise_plane(shape[2:], 0.01, 7) + _blob(shape[2:], (20, 20), 0.2, 4.0)
    cube = plane[np.newaxis, np.newaxis]
    beam = PixelBeam(4.0, 4.0)
    params = AutoMaskParameters(minpercentchange=10.0, growiterations=0)
    _, state = auto_multithresh(cube, psf_sidelobe_level=0.01, beam=beam, params=params)
    assert not state.channel_flags[0]
    # Same residual again: mask unchanged. Only once the threshold is reached does the channel stop.
    _, again = auto_multithresh(
        cube, psf_sidelobe_level=0.01, beam=beam, params=params, state=state, iteration_done=10
    )
    assert not again.channel_flags[0]
    _, stopped = auto_multithresh(
        cube,
        psf_sidelobe_level=0.01,
        beam=beam,
        params=params,
        state=state,
        iteration_done=10,
        threshold_reached=True,
    )
    assert stopped.channel_flags[0]


def test_primary_beam_limit_excludes_pixels_from_statistics_and_mask():
    shape = (64, 64)
    plane = _noise_plane(shape, 0.01, 5) + _blob(shape, (32, 32), 1.0, 4.0)
    plane[:, :8] = 50.0  # garbage where the primary beam is below the limit
    pb = np.ones(shape)
    pb[:, :8] = 0.1
    beam = PixelBeam(4.0, 4.0)
    mask, _ = auto_multithresh(plane, psf_sidelobe_level=0.05, beam=beam, pb=pb, pblimit=0.2)
    clean_mask, _ = auto_multithresh(plane[:, 8:], psf_sidelobe_level=0.05, beam=beam)
    assert not mask[:, :8].any() and mask[32, 32]
    assert np.array_equal(mask[:, 8:], clean_mask)
    # pbmask replaces the limit.
    mask, _ = auto_multithresh(
        plane, psf_sidelobe_level=0.05, beam=beam, pb=pb, pblimit=0.05, params=AutoMaskParameters(pbmask=0.5)
    )
    assert not mask[:, :8].any() and mask[32, 32]


def test_argument_checks():
    with pytest.raises(ValueError, match="smoothfactor"):
        AutoMaskParameters(smoothfactor=0.0)
    with pytest.raises(ValueError, match="growiterations"):
        AutoMaskParameters(growiterations=-1)
    with pytest.raises(ValueError, match="major >= minor"):
        PixelBeam(2.0, 3.0)
    with pytest.raises(ValueError, match="state has shape"):
        auto_multithresh(
            np.zeros((8, 8), np.float32),
            psf_sidelobe_level=0.1,
            beam=PixelBeam(2, 2),
            state=AutoMaskState.initial((1, 1, 4, 4)),
        )
    with pytest.raises(ValueError, match="needs the primary beam"):
        auto_multithresh(
            np.zeros((8, 8), np.float32),
            psf_sidelobe_level=0.1,
            beam=PixelBeam(2, 2),
            params=AutoMaskParameters(pbmask=0.3),
        )
    assert PixelBeam.from_arcsec(3.0, 1.5, 10.0, 0.5) == PixelBeam(6.0, 3.0, 10.0)
    assert PixelBeam(6.0, 3.0).area == pytest.approx(math.pi * 18 / (4 * math.log(2)))


# ---------------------------------------------------------------------------------------------
# Against tclean
# ---------------------------------------------------------------------------------------------


def _load(path):
    """A CASA image as float32 ``(stokes, chan, y, x)``."""
    import casatools

    image = casatools.image()
    image.open(path)
    try:
        data = image.getchunk(dropdeg=False)
    finally:
        image.close()
    return np.ascontiguousarray(np.transpose(data, (2, 3, 1, 0)), dtype=np.float32)


def _cell_arcsec(image):
    """Pixel size (arcsec) of an open casatools image, checked square."""
    import casatools

    quanta = casatools.quanta()
    increments = image.coordsys().increment(type="direction", format="q")["quantity"]
    dx, dy = (abs(quanta.convert(increments[f"*{i + 1}"], "arcsec")["value"]) for i in range(2))
    assert dx == pytest.approx(dy)
    return dx


@contextlib.contextmanager
def _environment(**values):
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class TcleanRun:
    """A tclean auto-multithresh run with every cycle's input residual and mask saved."""

    def __init__(self, directory, vis, params=None, **tclean_args):
        import casatools
        from casatasks import casalog, tclean

        from radio_clean.casa import reattach_casa_log

        self.params = params or AutoMaskParameters()
        self.prefix = str(directory / "img")
        log = str(directory / "tclean.log")
        casalog.setlogfile(log)
        try:
            with _environment(SAVE_ALL_RESIMS="true", SAVE_ALL_AUTOMASKS="true"):
                tclean(
                    vis=vis,
                    imagename=self.prefix,
                    datacolumn="data",
                    weighting="briggs",
                    robust=0.5,
                    niter=2000,
                    pblimit=0.2,
                    usemask="auto-multithresh",
                    **dataclasses.asdict(self.params),
                    **tclean_args,
                )
        finally:
            # Give CASA's log back to radio_clean's forwarder (importing casatasks took it).
            reattach_casa_log(casalog)
        with open(log) as stream:
            levels = re.findall(r"SidelobeLevel = ([-+0-9.eE]+)", stream.read())
        self.sidelobe_level = float(levels[0])
        image = casatools.image()
        image.open(self.prefix + ".psf")
        beam = image.restoringbeam()
        if "beams" in beam:  # a cube: CASA's automask uses the common beam
            common = image.commonbeam()
            beam = {"major": common["major"], "minor": common["minor"], "positionangle": common["pa"]}
        cell = _cell_arcsec(image)
        image.close()
        self.beam = PixelBeam.from_arcsec(
            beam["major"]["value"], beam["minor"]["value"], beam["positionangle"]["value"], cell
        )
        self.pb = _load(self.prefix + ".pb")
        self.ncycles = len(glob.glob(self.prefix + ".autothresh*"))

    def residual(self, cycle):
        return _load(f"{self.prefix}.inputres{cycle}")

    def casa_mask(self, cycle):
        return _load(f"{self.prefix}.autothresh{cycle}") > 0.5

    def replay(self):
        """Yield (cycle, our mask, tclean's mask, our state) for every cycle, carrying our own state."""
        state = None
        for cycle in range(1, self.ncycles + 1):
            mask, state = auto_multithresh(
                self.residual(cycle),
                psf_sidelobe_level=self.sidelobe_level,
                beam=self.beam,
                pb=self.pb,
                pblimit=0.2,
                state=state,
                iteration_done=cycle - 1,
                params=self.params,
            )
            yield cycle, mask, self.casa_mask(cycle), state


def _iou(a, b):
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def _check_replay(run, min_cycles):
    """Compare every plane of every cycle; return {(cycle, stokes, chan): (ours, casa)} pixel counts."""
    assert run.ncycles >= min_cycles
    counts = {}
    previous = None
    for cycle, mask, casa, state in run.replay():
        for stokes, chan in np.ndindex(mask.shape[:2]):
            ours, theirs = mask[stokes, chan], casa[stokes, chan]
            where = f"cycle {cycle} plane ({stokes}, {chan})"
            if not theirs.any():
                assert not ours.any(), f"{where}: tclean's mask is empty, ours has {ours.sum()} pixels"
            else:
                assert _iou(ours, theirs) >= 0.95, f"{where}: IoU {_iou(ours, theirs):.3f}"
            counts[cycle, stokes, chan] = (int(ours.sum()), int(theirs.sum()))
        # The state handed on is the mask itself plus the emission part of it.
        assert np.array_equal(state.previous_mask, mask) and np.all(state.positive_mask <= mask)
        if previous is not None:
            assert np.all(casa >= previous)
        previous = casa
    return counts


def _new_regions(run, stokes, chan):
    """Cycles at which tclean's mask gained a region disjoint from the previous cycle's mask."""
    cycles = []
    for cycle in range(2, run.ncycles + 1):
        before, after = run.casa_mask(cycle - 1)[stokes, chan], run.casa_mask(cycle)[stokes, chan]
        labels, n = ndimage.label(after)
        if any(not before[labels == i].any() for i in range(1, n + 1)):
            cycles.append(cycle)
    return cycles


@pytest.fixture(scope="module")
def run_3c273(demo_ms_dir, tmp_path_factory):
    return TcleanRun(
        tmp_path_factory.mktemp("am3c273"), str(demo_ms_dir / "3C273XC1.ms"), imsize=256, cell="0.5arcsec"
    )


@pytest.fixture(scope="module")
def run_3c273_options(demo_ms_dir, tmp_path_factory):
    params = AutoMaskParameters(negativethreshold=3.0, fastnoise=False)
    return TcleanRun(
        tmp_path_factory.mktemp("am3c273opt"),
        str(demo_ms_dir / "3C273XC1.ms"),
        params=params,
        imsize=256,
        cell="0.5arcsec",
    )


@pytest.fixture(scope="module")
def sim_mfs_ms(tmp_path_factory):
    from radio_clean.simulate import SkyComponent, simulate_ms

    path = str(tmp_path_factory.mktemp("amsim") / "mfs.ms")
    sky = [
        SkyComponent(5.0, (0.0, 0.0)),
        SkyComponent(0.04, (150.0, 100.0)),  # faint: masked only once the bright source is cleaned
        SkyComponent(
            1.0, (-250.0, 150.0), shape="gaussian", major_arcsec=180.0, minor_arcsec=90.0, pa_deg=30.0
        ),
    ]
    simulate_ms(path, sky, n_chan=1, noise_jy=0.5)
    return path


@pytest.fixture(scope="module")
def run_mfs(sim_mfs_ms, tmp_path_factory):
    return TcleanRun(tmp_path_factory.mktemp("ammfs"), sim_mfs_ms, imsize=128, cell="10arcsec")


@pytest.fixture(scope="module")
def run_mfs_options(sim_mfs_ms, tmp_path_factory):
    params = AutoMaskParameters(
        negativethreshold=2.0,
        fastnoise=False,
        growiterations=5,
        minbeamfrac=0.2,
        smoothfactor=1.5,
        cutthreshold=0.05,
        noisethreshold=4.0,
        lownoisethreshold=2.0,
    )
    return TcleanRun(
        tmp_path_factory.mktemp("ammfsopt"), sim_mfs_ms, params=params, imsize=128, cell="10arcsec"
    )


@pytest.fixture(scope="module")
def run_cube(tmp_path_factory):
    from radio_clean.simulate import SkyComponent, simulate_ms

    directory = tmp_path_factory.mktemp("amcube")
    # A steep spectrum (alpha = 60 from 1.35 to 1.55 GHz): channels 0 and 1 hold nothing but noise.
    sky = [
        SkyComponent(3.0, (0.0, 0.0), spectral_index=60.0),
        SkyComponent(0.06, (200.0, -150.0), spectral_index=60.0),
        SkyComponent(
            0.5,
            (-300.0, 200.0),
            shape="gaussian",
            major_arcsec=150.0,
            minor_arcsec=100.0,
            pa_deg=-40.0,
            spectral_index=60.0,
        ),
    ]
    ms = str(directory / "cube.ms")
    simulate_ms(
        ms,
        sky,
        n_chan=5,
        freq_start_hz=1.35e9,
        chan_width_hz=0.05e9,
        ref_freq_hz=1.55e9,
        noise_jy=1.0,
        hours=4.0,
        integration_s=120.0,
        phase_centre="J2000 12h30m00s +40d00m00s",
    )
    # interpolation='nearest': with the default 'linear' the first image channel is only half filled.
    return TcleanRun(directory, ms, imsize=128, cell="15arcsec", specmode="cube", interpolation="nearest")


def test_matches_tclean_3c273(run_3c273):
    counts = _check_replay(run_3c273, min_cycles=5)
    # The mask grows over the cycles (the grow stage and later thresholds both add to it).
    assert counts[run_3c273.ncycles, 0, 0][1] > 3 * counts[1, 0, 0][1] > 0


def test_matches_tclean_3c273_negative_threshold_slow_noise(run_3c273_options):
    counts = _check_replay(run_3c273_options, min_cycles=5)
    last = run_3c273_options.ncycles
    # The negative mask shows up once the sidelobe threshold has come down.
    assert counts[last, 0, 0][1] > 2 * counts[last - 2, 0, 0][1]


def test_matches_tclean_point_and_extended(run_mfs):
    counts = _check_replay(run_mfs, min_cycles=4)
    assert counts[run_mfs.ncycles, 0, 0][1] > 5 * counts[1, 0, 0][1] > 0
    # The faint source and the extended one join the mask after the first cycle.
    assert _new_regions(run_mfs, 0, 0)


def test_matches_tclean_point_and_extended_non_default_parameters(run_mfs_options):
    _check_replay(run_mfs_options, min_cycles=3)


def test_matches_tclean_cube(run_cube):
    counts = _check_replay(run_cube, min_cycles=3)
    last = run_cube.ncycles
    # The image reaches beyond pblimit in the upper channels: those pixels are out of the statistics.
    assert np.count_nonzero(run_cube.pb[0, 4] <= 0.2) > 0
    # Empty channels: noise threshold, nothing found, masking stopped (and tclean agrees: empty).
    *_, (_, _, _, state) = run_cube.replay()
    assert state.channel_flags.tolist() == [True, True, False, False, False]
    assert all(counts[cycle, 0, chan] == (0, 0) for cycle in range(1, last + 1) for chan in (0, 1))
    assert all(counts[last, 0, chan][1] > 0 for chan in (2, 3, 4))
    # In the brightest channel, new emission enters the mask only after a few cycles.
    assert _new_regions(run_cube, 0, 4)


def test_gaussian_kernel_matches_casa_convolve2d(tmp_path):
    import casatools

    path = str(tmp_path / "point.im")
    image = casatools.image()
    image.fromshape(path, [65, 65, 1, 1])
    data = np.zeros((65, 65, 1, 1))
    data[32, 32, 0, 0] = 1.0
    image.putchunk(data)
    cell = _cell_arcsec(image)
    smoothed = image.convolve2d(outfile="", major=f"{8 * cell}arcsec", minor=f"{3 * cell}arcsec", pa="30deg")
    casa = smoothed.getchunk()[:, :, 0, 0].T
    smoothed.done()
    image.done()
    ours = gaussian_kernel(PixelBeam(8.0, 3.0, 30.0))
    h = ours.shape[0] // 2
    casa = casa[32 - h : 32 + h + 1, 32 - h : 32 + h + 1]
    np.testing.assert_allclose(casa / casa.max(), ours, atol=1e-5)
    # ...and the mirror-image position angle does not match.
    assert np.abs(casa / casa.max() - gaussian_kernel(PixelBeam(8.0, 3.0, -30.0))).max() > 0.3
