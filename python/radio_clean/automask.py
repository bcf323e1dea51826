"""Auto-multithresh masking in numpy/scipy, with its cross-cycle state made explicit.

This is CASA's ``auto-multithresh`` (``SDMaskHandler::autoMaskByMultiThreshold``;
Kepley et al. 2020, PASP 132, 024505) re-implemented so that each cycle can run
in a separate process: everything the C++ keeps in memory between minor cycles
is in `AutoMaskState`, a handful of boolean arrays that can be stored as Butler
datasets (`AutoMaskState.to_arrays` / `AutoMaskState.from_arrays`).

The algorithm, per (Stokes, channel) plane, as tclean runs it before every minor
cycle (all numbers are tclean's defaults, see `AutoMaskParameters`):

1. **Statistics** over the valid pixels (primary beam above ``pblimit``, or
   above ``pbmask`` when that is set): peak, minimum, median and median absolute
   deviation (MAD). The noise is ``rms = 1.4826 * MAD``. With ``fastnoise``
   (the default) the statistics include the pixels already in the mask; without
   it they exclude them (and use Chauvenet clipping while the mask is empty).
2. **Threshold**: ``max(sidelobethreshold * psf_sidelobe_level * peak,
   noisethreshold * rms) + median`` where ``peak = max(|max|, |min|)``; the
   ``lownoisethreshold`` analogue gives the growth constraint and
   ``-max(sidelobethreshold * psf_sidelobe_level * peak, negativethreshold * rms)
   + median`` the negative mask.
3. **Prune**: 4-connected regions of fewer than ``minbeamfrac`` beam areas are removed.
4. **Smooth**: the mask is convolved with the beam scaled by ``smoothfactor``
   and cut at ``cutthreshold`` times the plane's maximum of the smoothed mask.
5. **Grow** (from the second cycle on, i.e. once ``iteration_done > 0``): the
   previous mask is dilated (4-connectivity, at most ``growiterations`` steps)
   inside the ``lownoisethreshold`` mask, then pruned (``dogrowprune``) and
   smoothed like the threshold mask.
6. **Combine**: the positive mask (CASA's ``posmask``) accumulates the previous
   positive mask, the grown mask and the new threshold mask; the final mask is
   the previous mask OR the positive mask OR the negative mask (if
   ``negativethreshold > 0``), restricted to the valid pixels. A mask never loses
   pixels from one cycle to the next.
7. **Stop**: a channel whose mask used the noise threshold and is empty after
   this cycle is flagged and never masked again; with ``minpercentchange >= 0``
   a channel is also flagged once the cycle threshold has reached the global
   threshold and its mask changed by less than that percentage.

Image planes are indexed ``[stokes, chan, y, x]`` with ``x`` increasing towards
the west (CASA's RA increment is negative) and ``y`` towards the north.
"""

from __future__ import annotations

__all__ = [
    "IMPORTED_WHEN_RUN",
    "AutoMaskParameters",
    "AutoMaskState",
    "PixelBeam",
    "PlaneStatistics",
    "PlaneThresholds",
    "auto_multithresh",
    "chauvenet_statistics",
    "fft_convolve_same",
    "gaussian_kernel",
    "grow_mask",
    "plane_statistics",
    "plane_thresholds",
    "prune_regions",
    "smooth_and_cut",
    "threshold_mask",
]

import dataclasses
import logging
import math
from typing import Any

import numpy as np

from .parameters import parameter_default, parameter_problem

_log = logging.getLogger(__name__)

MAD_TO_RMS = 1.4826
"""Factor CASA applies to the median absolute deviation to estimate the rms.

Not astropy.stats.mad_std's 1.482602218505602: thresholds must be CASA's to
the bit, or pixels at a threshold fall on the other side of it.
"""

# scipy.ndimage.generate_binary_structure(2, 1); scipy (about half a second) is imported by the
# functions that use it, so that pipelines without auto-multithresh do not pay for it.
IMPORTED_WHEN_RUN = ("scipy.fft", "scipy.ndimage", "scipy.special")
"""Modules `auto_multithresh` imports: imported ahead of the first mask by the CLEAN loop's second thread."""
_FOUR_CONNECTED = np.array([[False, True, False], [True, True, True], [False, True, False]])
_KERNEL_NSIGMA = 5.0


@dataclasses.dataclass(frozen=True)
class AutoMaskParameters:
    """Parameters of auto-multithresh, named as in tclean.

    Defaults and allowed values are those of the `CleanParametersConfig`
    fields of the same names (tclean's).
    """

    sidelobethreshold: float = parameter_default("sidelobethreshold")
    """Mask threshold in units of the PSF sidelobe level times the plane's peak."""
    noisethreshold: float = parameter_default("noisethreshold")
    """Mask threshold in units of the robust rms."""
    lownoisethreshold: float = parameter_default("lownoisethreshold")
    """Threshold (in robust rms) of the region the previous mask may grow into."""
    negativethreshold: float = parameter_default("negativethreshold")
    """Threshold (in robust rms) for negative features; 0 masks none."""
    smoothfactor: float = parameter_default("smoothfactor")
    """Size of the smoothing kernel in beams."""
    minbeamfrac: float = parameter_default("minbeamfrac")
    """Regions smaller than this fraction of the beam area are pruned; 0 prunes none."""
    cutthreshold: float = parameter_default("cutthreshold")
    """Fraction of the smoothed mask's peak above which the smoothed mask is kept."""
    growiterations: int = parameter_default("growiterations")
    """Maximum number of dilation steps of the previous mask; 0 disables growing."""
    dogrowprune: bool = parameter_default("dogrowprune")
    """Prune the grown mask."""
    minpercentchange: float = parameter_default("minpercentchange")
    """Stop masking a channel once its mask changes by less than this percentage
    (only after the cycle threshold reached the global threshold); negative disables."""
    fastnoise: bool = parameter_default("fastnoise")
    """Noise from all valid pixels (True) or from outside the current mask (False)."""
    pbmask: float = parameter_default("pbmask")
    """Primary-beam level below which nothing is masked (and no statistics are taken); 0: none."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            problem = parameter_problem(field.name, value)
            if problem is not None:
                raise ValueError(f"AutoMaskParameters.{field.name} = {value!r} is not allowed: {problem}.")


@dataclasses.dataclass(frozen=True)
class PixelBeam:
    """An elliptical Gaussian beam in pixel units (square pixels).

    ``pa_deg`` is the astronomical position angle of the major axis, from north
    (``+y``) through east (``-x``, since RA grows to the left of a CASA image).
    """

    major: float
    """FWHM of the major axis, pixels."""
    minor: float
    """FWHM of the minor axis, pixels."""
    pa_deg: float = 0.0
    """Position angle of the major axis, degrees east of north."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.major) and math.isfinite(self.minor) and math.isfinite(self.pa_deg)):
            raise ValueError(f"Beam axes and position angle must be finite, not {self}.")
        if not self.major >= self.minor > 0:
            raise ValueError(f"Beam needs major >= minor > 0, not {self.major} and {self.minor}.")

    @classmethod
    def from_arcsec(cls, major: float, minor: float, pa_deg: float, cell: float) -> PixelBeam:
        """Make a beam from FWHMs in arcsec and the (square) pixel size ``cell`` in arcsec."""
        if not cell > 0:
            raise ValueError(f"cell must be > 0 arcsec, not {cell}.")
        return cls(major / cell, minor / cell, pa_deg)

    @property
    def area(self) -> float:
        """Area of the beam in pixels, ``pi * major * minor / (4 ln 2)``."""
        return math.pi * self.major * self.minor / (4.0 * math.log(2.0))

    def scaled(self, factor: float) -> PixelBeam:
        """Return the beam with both axes multiplied by ``factor``."""
        return PixelBeam(self.major * factor, self.minor * factor, self.pa_deg)


@dataclasses.dataclass
class AutoMaskState:
    """What auto-multithresh carries from one cycle to the next.

    A fresh state (`initial`) is all False. Every array is boolean, one byte
    per pixel; `to_arrays` and `from_arrays` turn the state into plain numpy
    arrays and back, for storage between processes.
    """

    positive_mask: np.ndarray
    """``(stokes, chan, y, x)``: the emission mask accumulated over the cycles
    (CASA's ``posmask``): threshold and grown masks, never the negative mask."""
    previous_mask: np.ndarray
    """``(stokes, chan, y, x)``: the mask of the previous minor cycle (the
    starting mask before the first). The new mask contains it, and the grow
    stage dilates it."""
    channel_flags: np.ndarray
    """``(chan,)``: channels where masking stopped for good. CASA keeps one flag
    per channel, shared by all Stokes planes."""

    def __post_init__(self) -> None:
        self.positive_mask = np.asarray(self.positive_mask, dtype=bool)
        self.previous_mask = np.asarray(self.previous_mask, dtype=bool)
        self.channel_flags = np.asarray(self.channel_flags, dtype=bool)
        if self.positive_mask.ndim != 4 or self.previous_mask.shape != self.positive_mask.shape:
            raise ValueError(
                "AutoMaskState masks must both have shape (stokes, chan, y, x), not "
                f"{self.positive_mask.shape} and {self.previous_mask.shape}."
            )
        if self.channel_flags.shape != (self.positive_mask.shape[1],):
            raise ValueError(
                f"AutoMaskState.channel_flags must have shape ({self.positive_mask.shape[1]},), "
                f"not {self.channel_flags.shape}."
            )

    @classmethod
    def initial(cls, shape: tuple[int, int, int, int], mask: np.ndarray | None = None) -> AutoMaskState:
        """Return the state before the first cycle.

        Parameters
        ----------
        shape : `tuple` [`int`, `int`, `int`, `int`]
            ``(stokes, chan, y, x)`` of the images.
        mask : `numpy.ndarray`, optional
            A starting mask (broadcastable to ``shape``); tclean starts from an
            empty one.
        """
        previous = np.zeros(shape, dtype=bool)
        if mask is not None:
            previous[...] = np.asarray(mask, dtype=bool)
        return cls(np.zeros(shape, dtype=bool), previous, np.zeros(shape[1], dtype=bool))

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(stokes, chan, y, x)``."""
        return self.positive_mask.shape

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Return the state as a dict of numpy arrays (e.g. for `numpy.savez_compressed`)."""
        return {
            "positive_mask": self.positive_mask,
            "previous_mask": self.previous_mask,
            "channel_flags": self.channel_flags,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> AutoMaskState:
        """Rebuild a state from the output of `to_arrays` (or a loaded ``.npz``)."""
        return cls(arrays["positive_mask"], arrays["previous_mask"], arrays["channel_flags"])

    def copy(self) -> AutoMaskState:
        """Return a deep copy."""
        return AutoMaskState(self.positive_mask.copy(), self.previous_mask.copy(), self.channel_flags.copy())


@dataclasses.dataclass(frozen=True)
class PlaneStatistics:
    """Statistics of one residual plane, as auto-multithresh takes them."""

    max: float
    min: float
    median: float
    mad: float
    """Median absolute deviation from the median."""
    npix: int
    """Number of pixels the median and MAD were taken over."""

    @property
    def rms(self) -> float:
        """Robust rms, ``1.4826 * MAD``."""
        return self.mad * MAD_TO_RMS

    @property
    def peak(self) -> float:
        """``max(|max|, |min|)``."""
        return max(abs(self.max), abs(self.min))


@dataclasses.dataclass(frozen=True)
class PlaneThresholds:
    """The thresholds of one plane, in image units, computed in single precision as CASA does."""

    sidelobe: float
    """``sidelobethreshold * psf_sidelobe_level * peak + median``."""
    noise: float
    """``noisethreshold * rms + median``."""
    low_noise: float
    """``lownoisethreshold * rms + median``."""
    mask: float
    """``max(sidelobe, noise)``: the threshold of the new mask."""
    low: float
    """``max(sidelobe, low_noise)``: the threshold of the region the previous mask may grow into."""
    negative: float
    """``-max(sidelobethreshold * psf_sidelobe_level * peak, negativethreshold * rms) + median``."""
    kind: str
    """``"sidelobe"`` if the sidelobe threshold set `mask`, else ``"noise"``."""


def chauvenet_statistics(values: np.ndarray, max_iterations: int = 5) -> np.ndarray:
    """Clip ``values`` by Chauvenet's criterion, as CASA does for an empty mask with ``fastnoise=False``.

    Each pass keeps the values within ``z * sigma`` of the mean (``sigma`` the
    sample standard deviation), where ``z`` is the deviation expected once in
    ``2 * n`` draws from a normal distribution of ``n`` values
    (``n * erfc(z / sqrt(2)) = 0.5``). As in casacore, there are up to
    ``max_iterations + 1`` passes (iterations are counted from 0); clipping
    stops earlier once a pass keeps every value.

    Parameters
    ----------
    values : `numpy.ndarray`
        One-dimensional data.
    max_iterations : `int`, optional
        CASA's ``maxiter`` (5 in auto-multithresh).

    Returns
    -------
    kept : `numpy.ndarray`
        The values that survive.
    """
    from scipy import special

    kept = np.asarray(values, dtype=np.float64)
    for _ in range(max_iterations + 1):
        n = kept.size
        if n < 2:
            break
        z = math.sqrt(2.0) * float(special.erfcinv(0.5 / n))
        mean = kept.mean()
        sigma = kept.std(ddof=1)
        inside = np.abs(kept - mean) <= z * sigma
        if inside.all():
            break
        kept = kept[inside]
    return kept


def _median_mad(values: np.ndarray) -> tuple[float, float]:
    median = float(np.median(values))
    return median, float(np.median(np.abs(values - median)))


def plane_statistics(
    plane: np.ndarray,
    valid: np.ndarray | None = None,
    *,
    fastnoise: bool = True,
    exclude: np.ndarray | None = None,
    chauvenet: bool = False,
) -> PlaneStatistics:
    """Return the statistics auto-multithresh uses for one residual plane.

    The maximum and minimum are always over all ``valid`` pixels. With
    ``fastnoise`` the median and MAD are too; otherwise they are over the
    valid pixels not in ``exclude`` (the current mask) or, with ``chauvenet``
    (CASA's choice when that mask is empty), over the valid pixels that
    survive Chauvenet clipping (`chauvenet_statistics`).

    Parameters
    ----------
    plane : `numpy.ndarray`
        2-d residual plane.
    valid : `numpy.ndarray`, optional
        Boolean pixels to use (inside the primary-beam limit); all if None.
    fastnoise : `bool`, optional
        CASA's ``fastnoise``.
    exclude : `numpy.ndarray`, optional
        Boolean pixels left out of the median and MAD when not ``fastnoise``.
    chauvenet : `bool`, optional
        Clip by Chauvenet's criterion when not ``fastnoise``.

    Returns
    -------
    stats : `PlaneStatistics`
        NaN everywhere if no pixel is valid.
    """
    values = plane[valid] if valid is not None else plane.ravel()
    if values.size == 0:
        return PlaneStatistics(math.nan, math.nan, math.nan, math.nan, 0)
    vmax, vmin = float(values.max()), float(values.min())
    if fastnoise:
        noise_values = values
    elif chauvenet:
        noise_values = chauvenet_statistics(values)
    elif exclude is None:
        noise_values = values
    else:
        keep = ~exclude if valid is None else valid & ~exclude
        noise_values = plane[keep]
        if noise_values.size == 0:
            noise_values = values
    median, mad = _median_mad(noise_values.astype(np.float64))
    return PlaneStatistics(vmax, vmin, median, mad, int(noise_values.size))


def plane_thresholds(
    stats: PlaneStatistics, psf_sidelobe_level: float, params: AutoMaskParameters
) -> PlaneThresholds:
    """Return the thresholds of one plane from its statistics.

    Parameters
    ----------
    stats : `PlaneStatistics`
        From `plane_statistics`.
    psf_sidelobe_level : `float`
        Largest PSF sidelobe as a fraction of the PSF peak.
    params : `AutoMaskParameters`
        The thresholds' factors.

    Returns
    -------
    thresholds : `PlaneThresholds`
        Computed in float32, the precision of CASA's computation, so that
        comparisons with float32 images cut at the same values.
    """
    f32 = np.float32
    median = f32(stats.median)
    rms = f32(stats.mad * MAD_TO_RMS)
    sidelobe = f32(psf_sidelobe_level) * f32(params.sidelobethreshold) * f32(stats.peak)
    noise = f32(params.noisethreshold) * rms
    low_noise = f32(params.lownoisethreshold) * rms
    negative = f32(params.negativethreshold) * rms
    negative_mask = -max(sidelobe, negative) + median
    sidelobe = sidelobe + median
    noise = noise + median
    low_noise = low_noise + median
    mask = max(sidelobe, noise)
    return PlaneThresholds(
        sidelobe=float(sidelobe),
        noise=float(noise),
        low_noise=float(low_noise),
        mask=float(mask),
        low=float(max(sidelobe, low_noise)),
        negative=float(negative_mask),
        kind="sidelobe" if mask == sidelobe else "noise",
    )


def threshold_mask(plane: np.ndarray, threshold: float) -> np.ndarray:
    """Return the pixels beyond ``threshold``: above it, or below it if it is negative.

    This is CASA's rule (``makeMaskByPerChanThreshold``): a negative threshold
    selects the pixels *below* it, which is how the negative mask is made.
    """
    threshold = np.float32(threshold) if plane.dtype == np.float32 else threshold
    return plane < threshold if threshold < 0 else plane > threshold


def prune_regions(mask: np.ndarray, min_size: float) -> tuple[np.ndarray, int, int]:
    """Remove the 4-connected regions of ``mask`` with fewer than ``min_size`` pixels.

    Parameters
    ----------
    mask : `numpy.ndarray`
        2-d boolean mask.
    min_size : `float`
        Regions of ``size < min_size`` pixels go; 0 keeps all.

    Returns
    -------
    pruned : `numpy.ndarray`
        The mask without the small regions (a new array).
    n_regions : `int`
        Number of regions found.
    n_removed : `int`
        Number of regions removed.
    """
    from scipy import ndimage

    if not mask.any():
        return np.zeros_like(mask, dtype=bool), 0, 0
    labels, n_regions = ndimage.label(mask, structure=_FOUR_CONNECTED)
    if min_size <= 0:
        return mask.astype(bool, copy=True), n_regions, 0
    sizes = np.bincount(labels.ravel(), minlength=n_regions + 1)
    keep = sizes >= min_size
    keep[0] = False
    return keep[labels], n_regions, int(n_regions - np.count_nonzero(keep[1:]))


def gaussian_kernel(beam: PixelBeam) -> np.ndarray:
    """Return the smoothing kernel of ``beam``: a Gaussian sampled at pixel centres, peak 1.

    The kernel is indexed ``[y, x]``, odd-sized, centred, and extends to 5
    standard deviations of the major axis in both directions. Not
    astropy.convolution's Gaussian2DKernel, which is normalized to unit sum
    and sized otherwise: the smoothed mask is cut at a fraction of its
    maximum, so the kernel must be the one CASA's mask handler samples.
    """
    sigma_major = beam.major / math.sqrt(8.0 * math.log(2.0))
    half = max(1, int(_KERNEL_NSIGMA * sigma_major + 0.5))
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    dy, dx = np.meshgrid(offsets, offsets, indexing="ij")
    pa = math.radians(beam.pa_deg)
    # Major axis towards (x, y) = (-sin pa, cos pa): north through east, east being -x.
    along_major = -dx * math.sin(pa) + dy * math.cos(pa)
    along_minor = dx * math.cos(pa) + dy * math.sin(pa)
    four_ln2 = 4.0 * math.log(2.0)
    return np.exp(-four_ln2 * ((along_major / beam.major) ** 2 + (along_minor / beam.minor) ** 2))


def smooth_and_cut(
    mask: np.ndarray, beam: PixelBeam, cutthreshold: float, *, kernel: np.ndarray | None = None
) -> np.ndarray:
    """Convolve ``mask`` with the Gaussian ``beam`` and keep what exceeds ``cutthreshold`` × the peak.

    Parameters
    ----------
    mask : `numpy.ndarray`
        2-d boolean mask.
    beam : `PixelBeam`
        Smoothing beam (already scaled by ``smoothfactor``).
    cutthreshold : `float`
        Fraction of the smoothed mask's maximum to cut at.
    kernel : `numpy.ndarray`, optional
        ``gaussian_kernel(beam)``, if already made.

    Returns
    -------
    smoothed : `numpy.ndarray`
        Boolean mask of the pixels where the smoothed mask exceeds the cut
        (empty if ``mask`` is).
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return np.zeros(mask.shape, dtype=bool)
    if kernel is None:
        kernel = gaussian_kernel(beam)
    # The kernel is finite: only the mask's bounding box grown by the kernel's half-width can be
    # non-zero, so convolve that part alone (the same numbers, less work on a large image).
    half = kernel.shape[0] // 2
    cols = np.flatnonzero(mask.any(axis=0))
    y0, y1 = max(rows[0] - half, 0), min(rows[-1] + half + 1, mask.shape[0])
    x0, x1 = max(cols[0] - half, 0), min(cols[-1] + half + 1, mask.shape[1])
    box = mask[y0:y1, x0:x1].astype(np.float32)
    smoothed = fft_convolve_same(box, kernel.astype(np.float32))
    cut = np.float32(cutthreshold) * np.float32(smoothed.max())
    out = np.zeros(mask.shape, dtype=bool)
    out[y0:y1, x0:x1] = threshold_mask(smoothed, float(cut))
    return out


def fft_convolve_same(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Return ``scipy.signal.fftconvolve(image, kernel, mode="same")``, the very same numbers.

    The same scipy.fft calls in the same order, without importing
    scipy.signal (about a second, more than the rest of the CLEAN run's
    imports of scipy together).

    Parameters
    ----------
    image, kernel : `numpy.ndarray`
        Real arrays of equal dimensionality.

    Returns
    -------
    convolved : `numpy.ndarray`
        ``image`` convolved with ``kernel``, of the shape of ``image``.
    """
    from scipy import fft

    # fftconvolve transforms only the axes along which both arrays are longer than one.
    axes = [axis for axis in range(image.ndim) if image.shape[axis] != 1 and kernel.shape[axis] != 1]
    shape = [
        image.shape[axis] + kernel.shape[axis] - 1
        if axis in axes
        else max(image.shape[axis], kernel.shape[axis])
        for axis in range(image.ndim)
    ]
    if axes:
        fast_shape = [fft.next_fast_len(shape[axis], True) for axis in axes]
        product = fft.rfftn(image, fast_shape, axes=axes) * fft.rfftn(kernel, fast_shape, axes=axes)
        full = fft.irfftn(product, fast_shape, axes=axes)[tuple(slice(length) for length in shape)]
    else:
        full = image * kernel
    start = (np.array(full.shape) - np.array(image.shape)) // 2
    return full[tuple(slice(s, s + n) for s, n in zip(start, image.shape))].copy()


def grow_mask(seed: np.ndarray, constraint: np.ndarray, iterations: int) -> np.ndarray:
    """Grow ``seed`` into ``constraint`` by up to ``iterations`` 4-connected dilation steps.

    CASA's ``binaryDilation``: at each step every seed pixel inside the
    constraint sets its four neighbours; the result is then multiplied by the
    constraint. That equals a dilation of ``seed & constraint`` restricted to
    the constraint, which is what this computes.

    Parameters
    ----------
    seed : `numpy.ndarray`
        2-d boolean mask to grow (the previous mask).
    constraint : `numpy.ndarray`
        2-d boolean region the mask may occupy (the low-noise threshold mask).
    iterations : `int`
        Maximum number of steps (>= 1); growth stops earlier when nothing changes.

    Returns
    -------
    grown : `numpy.ndarray`
        Boolean mask, inside ``constraint``.
    """
    from scipy import ndimage

    start = seed & constraint
    if iterations < 1 or not start.any():
        return start
    return ndimage.binary_dilation(start, structure=_FOUR_CONNECTED, iterations=iterations, mask=constraint)


def _as_cube(array: np.ndarray, name: str) -> np.ndarray:
    if array.ndim == 2:
        return array[np.newaxis, np.newaxis]
    if array.ndim == 4:
        return array
    raise ValueError(f"{name} must be 2-d (y, x) or 4-d (stokes, chan, y, x), not {array.ndim}-d.")


def _per_plane(value: float | np.ndarray, shape: tuple[int, int], name: str) -> np.ndarray:
    try:
        return np.broadcast_to(np.asarray(value, dtype=np.float64), shape)
    except ValueError:
        raise ValueError(f"{name} must be a scalar or broadcastable to (stokes, chan) = {shape}.") from None


class _ValidRegion:
    """The pixels auto-multithresh may use, plane by plane (None: all of them)."""

    def __init__(self, pb: np.ndarray | None, pblimit: float, pbmask: float, shape: tuple[int, ...]) -> None:
        self._pb = None
        if pb is None:
            if pbmask > 0:
                raise ValueError("AutoMaskParameters.pbmask > 0 needs the primary beam (pb).")
            return
        # With pbmask, CASA's autoMaskWithinPB uses it in place of the residual's pblimit mask.
        self._level = pbmask if pbmask > 0 else pblimit
        if self._level <= 0:
            return
        pb = np.asarray(pb)
        if pb.ndim == 2:
            pb = pb[np.newaxis, np.newaxis]
        try:
            self._pb = np.broadcast_to(pb, shape)
        except ValueError:
            raise ValueError(f"pb of shape {pb.shape} does not broadcast to {shape}.") from None

    def plane(self, istokes: int, ichan: int) -> np.ndarray | None:
        """Boolean valid pixels of one plane, or None if all are valid."""
        return None if self._pb is None else self._pb[istokes, ichan] > self._level


def auto_multithresh(
    residual: np.ndarray,
    *,
    psf_sidelobe_level: float | np.ndarray,
    beam: PixelBeam,
    pb: np.ndarray | None = None,
    pblimit: float = 0.2,
    state: AutoMaskState | None = None,
    iteration_done: int = 0,
    threshold_reached: bool = False,
    params: AutoMaskParameters | None = None,
) -> tuple[np.ndarray, AutoMaskState]:
    """Make the mask for the next minor cycle, as tclean's auto-multithresh does.

    Parameters
    ----------
    residual : `numpy.ndarray`
        The residual image the minor cycle will start from, ``(stokes, chan,
        y, x)`` or ``(y, x)``; float32 as CASA stores it (other types are used
        as they are).
    psf_sidelobe_level : `float` or `numpy.ndarray`
        Largest PSF sidelobe relative to the PSF peak (tclean logs it as
        ``SidelobeLevel``); a scalar or an array broadcastable to ``(stokes,
        chan)``. tclean passes one value for a whole cube, the largest over
        its channels; pass that to reproduce it.
    beam : `PixelBeam`
        The restoring beam (for a cube, CASA uses the common beam of all
        channels). Sets the prune size and, times ``smoothfactor``, the
        smoothing kernel.
    pb : `numpy.ndarray`, optional
        Primary beam, broadcastable to the residual. Pixels with ``pb <=
        pblimit`` (or ``<= params.pbmask`` if that is set) are left out of the
        statistics and out of the mask. Without it every pixel is used.
    pblimit : `float`, optional
        tclean's ``pblimit``; 0 or negative: no limit.
    state : `AutoMaskState`, optional
        What the previous cycle returned; None before the first cycle.
    iteration_done : `int`, optional
        Total number of minor-cycle iterations done so far. The grow stage runs
        only when it is positive (tclean's ``iterdone``).
    threshold_reached : `bool`, optional
        Whether the cycle threshold has come down to the global threshold;
        used only with ``params.minpercentchange >= 0``.
    params : `AutoMaskParameters`, optional
        Defaults are tclean's.

    Returns
    -------
    mask : `numpy.ndarray`
        Boolean mask for the next minor cycle, same shape as ``residual``.
    state : `AutoMaskState`
        The state to pass to the next cycle (a new object; the input state is
        not modified).

    Raises
    ------
    ValueError
        If shapes do not agree or a parameter is out of range.
    """
    params = params or AutoMaskParameters()
    residual = np.asarray(residual)
    input_ndim = residual.ndim
    cube = _as_cube(residual, "residual")
    nstokes, nchan, ny, nx = cube.shape
    if state is None:
        state = AutoMaskState.initial(cube.shape)
    elif state.shape != cube.shape:
        raise ValueError(f"state has shape {state.shape} but the residual {cube.shape}.")
    sidelobe = _per_plane(psf_sidelobe_level, (nstokes, nchan), "psf_sidelobe_level")
    valid = _ValidRegion(pb, pblimit, params.pbmask, cube.shape)

    previous = state.previous_mask
    positive = state.positive_mask.copy()
    negative = np.zeros(cube.shape, dtype=bool) if params.negativethreshold > 0 else None
    flags = state.channel_flags.copy()
    # CASA: Double(minbeamfrac) * Double(beam area in pixels as a Float).
    prune_size = 0.0
    if params.minbeamfrac > 0:
        prune_size = float(np.float32(params.minbeamfrac)) * float(np.float32(beam.area))
    smooth_beam = beam.scaled(params.smoothfactor)
    kernel = gaussian_kernel(smooth_beam)
    do_grow = iteration_done > 0 and params.growiterations > 0
    # CASA decides whether the mask is "full" from the first plane only.
    full_mask = bool(previous[0, 0].all())
    kinds = np.empty((nstokes, nchan), dtype=object)
    _log.debug(
        "auto-multithresh: %d x %d planes, beam %.3f x %.3f pix at %.1f deg, prune size %.4g, %s",
        nstokes,
        nchan,
        beam.major,
        beam.minor,
        beam.pa_deg,
        prune_size,
        "growing" if do_grow else "no growth (first cycle)" if params.growiterations > 0 else "no growth",
    )

    for ichan in range(nchan):
        if flags[ichan]:
            _log.debug("[C%d] masking stopped in an earlier cycle; mask kept as it was.", ichan)
            continue
        for istokes in range(nstokes):
            label = f"[C{ichan}]" if nstokes == 1 else f"[S{istokes} C{ichan}]"
            plane = cube[istokes, ichan]
            plane_valid = valid.plane(istokes, ichan)
            prev = previous[istokes, ichan]
            stats = plane_statistics(
                plane,
                plane_valid,
                fastnoise=params.fastnoise,
                exclude=prev,
                chauvenet=(not prev.any()) or full_mask,
            )
            if stats.npix == 0:
                kinds[istokes, ichan] = "none"
                _log.warning("%s no valid pixel (all below the primary-beam limit); not masked.", label)
                continue
            thr = plane_thresholds(stats, float(sidelobe[istokes, ichan]), params)
            kinds[istokes, ichan] = thr.kind
            found, grown, neg, counts = _plane_masks(
                plane, plane_valid, prev, thr, params, prune_size, smooth_beam, kernel, do_grow
            )
            pos = positive[istokes, ichan]
            pos |= found
            if grown is not None:
                pos |= grown
            if plane_valid is not None:
                pos &= plane_valid
            if negative is not None:
                negative[istokes, ichan] = neg
            _log.debug(
                "%s median=%.6g rms=%.6g (MAD %.6g over %d pix) peak=%.6g: %s threshold %.6g "
                "(sidelobe %.6g, noise %.6g), low %.6g, negative %.6g; regions %d pruned %d; "
                "grown regions %d pruned %d; negative pixels %d; positive mask %d pixels",
                label,
                stats.median,
                stats.rms,
                stats.mad,
                stats.npix,
                stats.peak,
                thr.kind,
                thr.mask,
                thr.sidelobe,
                thr.noise,
                thr.low,
                thr.negative,
                *counts,
                int(np.count_nonzero(pos)),
            )

    mask = previous | positive
    if negative is not None:
        mask |= negative
    for istokes, ichan in np.ndindex(nstokes, nchan):
        plane_valid = valid.plane(istokes, ichan)
        if plane_valid is not None:
            mask[istokes, ichan] &= plane_valid

    _update_channel_flags(flags, previous, mask, kinds, params, threshold_reached)
    new_state = AutoMaskState(positive, mask, flags)
    return (mask[0, 0] if input_ndim == 2 else mask), new_state


def _plane_masks(
    plane: np.ndarray,
    plane_valid: np.ndarray | None,
    previous: np.ndarray,
    thr: PlaneThresholds,
    params: AutoMaskParameters,
    prune_size: float,
    smooth_beam: PixelBeam,
    kernel: np.ndarray,
    do_grow: bool,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, tuple[int, int, int, int, int]]:
    """One plane's new masks: found above the threshold, grown from the previous mask, negative.

    Returns
    -------
    found : `numpy.ndarray`
        Pixels above the mask threshold, pruned, smoothed and cut.
    grown : `numpy.ndarray` or `None`
        The previous mask grown into the low-noise region (`None` without growth).
    negative : `numpy.ndarray` or `None`
        Pixels below minus the negative threshold (`None` without ``negativethreshold``).
    counts : `tuple` [`int`, ...]
        Regions and pruned regions of ``found`` and of ``grown``, and negative pixels (for the log).
    """
    found = threshold_mask(plane, thr.mask)
    n_regions = n_pruned = 0
    if params.minbeamfrac > 0:
        if plane_valid is not None:
            found &= plane_valid
        found, n_regions, n_pruned = prune_regions(found, prune_size)
    found = smooth_and_cut(found, smooth_beam, params.cutthreshold, kernel=kernel)

    grown = None
    n_grow_regions = n_grow_pruned = 0
    if do_grow:
        grown = grow_mask(previous, threshold_mask(plane, thr.low), params.growiterations)
        if params.minbeamfrac > 0 and params.dogrowprune:
            grown, n_grow_regions, n_grow_pruned = prune_regions(grown, prune_size)
        grown = smooth_and_cut(grown, smooth_beam, params.cutthreshold, kernel=kernel)

    negative = None
    if params.negativethreshold > 0:
        negative = smooth_and_cut(
            threshold_mask(plane, thr.negative), smooth_beam, params.cutthreshold, kernel=kernel
        )
    n_negative = 0 if negative is None else int(np.count_nonzero(negative))
    return found, grown, negative, (n_regions, n_pruned, n_grow_regions, n_grow_pruned, n_negative)


def _update_channel_flags(
    flags: np.ndarray,
    previous: np.ndarray,
    mask: np.ndarray,
    kinds: np.ndarray,
    params: AutoMaskParameters,
    threshold_reached: bool,
) -> None:
    """Flag the channels where masking stops (CASA's ``skipChannels``), in place."""
    frac_change = params.minpercentchange / 100.0
    for ichan in range(flags.size):
        # CASA looks at the threshold type of the first Stokes plane and the mask of all of them.
        if flags[ichan] or kinds[0, ichan] != "noise":
            continue
        current = int(np.count_nonzero(mask[:, ichan]))
        before = int(np.count_nonzero(previous[:, ichan]))
        change = abs(current - before)
        settled = frac_change >= 0 and threshold_reached and (change == 0 or change < frac_change * before)
        if current == 0 or settled:
            flags[ichan] = True
            _log.debug(
                "[C%d] stopping masking for this channel (%s).",
                ichan,
                "empty mask with the noise threshold"
                if current == 0
                else f"mask changed by {change} of {before} pixels",
            )


def __getattr__(name: str) -> Any:
    # Repositories written before the formatters moved name this one in their datastore records.
    if name == "AutoMaskStateFormatter":
        from .formatters import AutoMaskStateFormatter

        return AutoMaskStateFormatter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
