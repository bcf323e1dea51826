"""Radio images as Butler datasets: `RadioImage` and its FITS formatter.

A `RadioImage` is a cube of float32 pixels with axes (Stokes, channel, y, x)
in numpy order, which is the numpy order of a FITS file whose axes are RA,
DEC, FREQ, STOKES (CASA's ``exportfits`` with its default ``stokeslast=True``).
Its world coordinates are a four-axis `astropy.wcs.WCS` in FITS axis order.

On disk (`RadioImageFitsFormatter`) an image is one FITS file:

* primary HDU: the pixels (BITPIX -32) and a header with the WCS written at
  full double precision, ``BUNIT`` and, for a single restoring beam,
  ``BMAJ``/``BMIN``/``BPA`` in degrees, ``ORIGIN`` with the software versions,
  then any cards the writer is given (``OBJECT``, ``TELESCOP``, ``HISTORY``,
  ... from `radio_clean.fits_cards`), which reading ignores;
* ``BEAMS`` binary table (only for per-plane beams), laid out exactly as CASA
  writes it (``CASAMBM = T`` in the primary header, columns BMAJ, BMIN
  [arcsec], BPA [deg] as float32 and CHAN, POL as int32, ``NCHAN``/``NPOL`` in
  its header), so that CASA's ``importfits`` reads the per-plane beams;
* ``PROVENANCE`` binary table (only if there is provenance): one row per
  entry, columns KEY and VALUE, the value JSON-encoded so that its type
  (str, int, float, bool) survives exactly. CASA ignores this table; it must
  come after ``BEAMS`` (CASA's reader aborts the process otherwise).

Every task reads and writes several images, so this I/O is kept cheap: the
file is written byte for byte as astropy would write it but without astropy
HDUs, and read back with plain reads (only the requested channels), falling
back to astropy for any file not in this layout. WCSs, which take about a
millisecond of Python to build from a header, are built once per distinct
header and copied.
"""

from __future__ import annotations

__all__ = [
    "FITS_SPECSYS_FROM_CASA",
    "STOKES_CODES",
    "Beam",
    "PlaneBeams",
    "ProvenanceValue",
    "RadioImage",
    "RadioImageFitsFormatter",
    "make_image_wcs",
    "read_fits_provenance",
    "write_fits_from_channel_pieces",
]

import copy
import functools
import json
import math
import os
import re
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass
from typing import Any, ClassVar

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, WCSHDO_P14, WCSHDO_P17, FITSFixedWarning, WCSHDO_safe
from lsst.daf.butler import DatasetProvenance, FormatterV2
from lsst.resources import ResourcePath

from .fits_cards import observation_cards, origin

ProvenanceValue = str | int | float | bool
"""Types a provenance entry may have (they round-trip through FITS and CASA)."""

STOKES_CODES: dict[str, int] = {
    "I": 1, "Q": 2, "U": 3, "V": 4,
    "RR": -1, "LL": -2, "RL": -3, "LR": -4,
    "XX": -5, "YY": -6, "XY": -7, "YX": -8,
}  # fmt: skip
"""FITS STOKES axis values of the polarization products CASA images can hold."""

_STOKES_NAMES = {code: name for name, code in STOKES_CODES.items()}

FITS_SPECSYS_FROM_CASA: dict[str, str] = {
    "LSRK": "LSRK",
    "LSRD": "LSRD",
    "BARY": "BARYCENT",
    "GEO": "GEOCENTR",
    "TOPO": "TOPOCENT",
    "GALACTO": "GALACTOC",
    "LGROUP": "LOCALGRP",
    "CMB": "CMBDIPOL",
    "REST": "SOURCE",
}
"""FITS ``SPECSYS`` value of each CASA spectral reference frame."""

_KNOWN_SPECSYS = frozenset(FITS_SPECSYS_FROM_CASA.values())

# wcslib writes 12-14 significant digits by default; 17 makes the FITS round trip exact.
_WCS_HEADER_FLAGS = WCSHDO_P17 | WCSHDO_safe
# What `WCS.to_header` asks wcslib for when given _WCS_HEADER_FLAGS (it adds WCSHDO_P14): the text
# wcslib writes with these flags is all that WCS.to_header(relax=_WCS_HEADER_FLAGS) is made of.
_WCSLIB_HEADER_FLAGS = WCSHDO_P14 | _WCS_HEADER_FLAGS

# A card in the primary header saying which layout of this file the reader is looking at.
_LAYOUT_KEYWORD = "RCLAYOUT"
_LAYOUT_VERSION = 1
_BEAMS_EXTNAME = "BEAMS"
_PROVENANCE_EXTNAME = "PROVENANCE"
_BUTLER_PROVENANCE_PREFIX = "LSST.BUTLER"
_ARCSEC_PER_DEG = 3600.0
_FITS_BLOCK = 2880


@dataclass(frozen=True)
class Beam:
    """An elliptical Gaussian restoring beam.

    Parameters
    ----------
    major_arcsec : `float`
        Full width at half maximum of the major axis, arcseconds.
    minor_arcsec : `float`
        Full width at half maximum of the minor axis, arcseconds.
    pa_deg : `float`
        Position angle of the major axis, degrees east of north.

    Raises
    ------
    ValueError
        If a value is not finite, an axis is negative, or the minor axis is
        longer than the major axis.
    """

    major_arcsec: float
    minor_arcsec: float
    pa_deg: float

    def __post_init__(self) -> None:
        for name in ("major_arcsec", "minor_arcsec", "pa_deg"):
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise ValueError(f"Beam {name} must be finite, not {value}.")
            object.__setattr__(self, name, value)
        if self.minor_arcsec < 0 or self.minor_arcsec > self.major_arcsec:
            raise ValueError(
                f"Beam axes must satisfy 0 <= minor <= major; got major={self.major_arcsec} arcsec, "
                f"minor={self.minor_arcsec} arcsec."
            )

    def isclose(self, other: Beam, *, rtol: float = 0.0) -> bool:
        """Return whether two beams agree to a relative tolerance.

        Parameters
        ----------
        other : `Beam`
            The beam to compare with.
        rtol : `float`, optional
            Relative tolerance; 0 asks for exact equality.

        Returns
        -------
        close : `bool`
            `True` if major, minor and position angle all agree.
        """
        return all(
            math.isclose(mine, theirs, rel_tol=rtol, abs_tol=0.0)
            for mine, theirs in zip(
                (self.major_arcsec, self.minor_arcsec, self.pa_deg),
                (other.major_arcsec, other.minor_arcsec, other.pa_deg),
            )
        )


class PlaneBeams:
    """Restoring beams per image plane, as CASA keeps them for cubes.

    Parameters
    ----------
    major_arcsec, minor_arcsec, pa_deg : array-like
        Major and minor FWHM (arcsec) and position angle (deg) of the beam of
        each plane, each of shape (n_chan, n_stokes).

    Notes
    -----
    Values are held as float32, the precision of the FITS ``BEAMS`` table
    CASA writes and reads, so that a FITS round trip is exact. A plane whose
    beam is all zeros (CASA writes those for empty channels) is allowed.
    """

    def __init__(self, major_arcsec: Any, minor_arcsec: Any, pa_deg: Any) -> None:
        arrays = [np.array(values, dtype=np.float32) for values in (major_arcsec, minor_arcsec, pa_deg)]
        shape = arrays[0].shape
        if len(shape) != 2 or any(array.shape != shape for array in arrays):
            raise ValueError(
                "PlaneBeams needs three arrays of the same shape (n_chan, n_stokes); "
                f"got shapes {[array.shape for array in arrays]}."
            )
        if not all(np.isfinite(array).all() for array in arrays):
            raise ValueError("PlaneBeams values must all be finite.")
        major, minor, _ = arrays
        if (minor < 0).any() or (minor > major).any():
            raise ValueError("PlaneBeams axes must satisfy 0 <= minor <= major in every plane.")
        for array in arrays:
            array.flags.writeable = False
        self._major, self._minor, self._pa = arrays

    @classmethod
    def from_beams(cls, beams: Sequence[Sequence[Beam]]) -> PlaneBeams:
        """Make per-plane beams from nested sequences indexed [chan][stokes].

        Parameters
        ----------
        beams : sequence of sequences of `Beam`
            ``beams[chan][stokes]`` is the beam of that plane.

        Returns
        -------
        plane_beams : `PlaneBeams`
            The beams, rounded to float32.
        """
        return cls(
            [[beam.major_arcsec for beam in row] for row in beams],
            [[beam.minor_arcsec for beam in row] for row in beams],
            [[beam.pa_deg for beam in row] for row in beams],
        )

    @property
    def major_arcsec(self) -> np.ndarray:
        """Major-axis FWHM per plane, arcsec, shape (n_chan, n_stokes) (read-only)."""
        return self._major

    @property
    def minor_arcsec(self) -> np.ndarray:
        """Minor-axis FWHM per plane, arcsec, shape (n_chan, n_stokes) (read-only)."""
        return self._minor

    @property
    def pa_deg(self) -> np.ndarray:
        """Position angle per plane, degrees, shape (n_chan, n_stokes) (read-only)."""
        return self._pa

    @property
    def n_chan(self) -> int:
        """Number of channels."""
        return self._major.shape[0]

    @property
    def n_stokes(self) -> int:
        """Number of Stokes planes."""
        return self._major.shape[1]

    def __getitem__(self, chan_and_stokes: tuple[int, int]) -> Beam:
        chan, stokes = chan_and_stokes
        return Beam(
            float(self._major[chan, stokes]), float(self._minor[chan, stokes]), float(self._pa[chan, stokes])
        )

    def channel_slice(self, start: int, stop: int) -> PlaneBeams:
        """Return the beams of channels ``start`` to ``stop - 1``."""
        return PlaneBeams(self._major[start:stop], self._minor[start:stop], self._pa[start:stop])

    def isclose(self, other: PlaneBeams, *, rtol: float = 0.0) -> bool:
        """Return whether all planes agree to a relative tolerance (0: exactly)."""
        if self._major.shape != other._major.shape:
            return False
        return all(
            np.allclose(mine, theirs, rtol=rtol, atol=0.0)
            for mine, theirs in zip(
                (self._major, self._minor, self._pa), (other._major, other._minor, other._pa)
            )
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PlaneBeams):
            return NotImplemented
        return self.isclose(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PlaneBeams(n_chan={self.n_chan}, n_stokes={self.n_stokes})"


RestoringBeam = Beam | PlaneBeams | None


class _Memo:
    """A small first-in-first-out memo of values that are expensive to make and never handed out.

    Building an astropy `WCS` from a header costs about a millisecond of
    Python (card formatting and verification); a `deepcopy` of one costs
    tens of microseconds. Every image of a run has one of a few WCSs, so
    the WCSs and header texts made from them are kept here, keyed by text
    that determines them completely, and callers get copies. Plain dict
    operations keep it safe to share between threads and across fork.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._values: dict[Any, Any] = {}

    def get(self, key: Any) -> Any:
        return self._values.get(key) if key is not None else None

    def put(self, key: Any, value: Any) -> None:
        if key is None:
            return
        self._values[key] = value
        while len(self._values) > self._size:
            try:
                del self._values[next(iter(self._values))]
            except (KeyError, RuntimeError, StopIteration):  # another thread got there first
                break


_NORMALIZED_WCS = _Memo(128)
_WCS_HEADER_TEXT = _Memo(128)
_FILE_WCS = _Memo(128)


def _wcs_key(wcs: WCS) -> str | None:
    """Return the text that determines ``wcs.to_header(relax=_WCS_HEADER_FLAGS)``, or `None`.

    That is wcslib's own header text (about 10 microseconds, against about
    100 for `WCS.to_header`, which parses it into a `fits.Header`). `None`
    if the WCS has SIP distortion (`WCS.to_header` adds cards of its own).
    """
    if wcs.wcs is None or wcs.sip is not None:
        return None
    try:
        return wcs.wcs.to_header(_WCSLIB_HEADER_FLAGS)
    except Exception:  # let the slow path raise whatever it raises
        return None


def _normalize_wcs_uncached(wcs: WCS) -> WCS:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(wcs.to_header(relax=_WCS_HEADER_FLAGS))


def _normalized_wcs(wcs: WCS) -> WCS:
    """Return a copy of ``wcs`` as it reads back from its own full-precision header.

    This makes every `RadioImage` hold the WCS a FITS round trip gives
    (wcslib's fixes applied, e.g. OBSGEO-L/B/H derived from OBSGEO-X/Y/Z),
    so that images compare equal before and after one. The result depends
    only on the header text, so it is made once per distinct text and copied.
    """
    key = _wcs_key(wcs)
    normalized = _NORMALIZED_WCS.get(key)
    if normalized is None:
        normalized = _normalize_wcs_uncached(wcs)
        _NORMALIZED_WCS.put(key, normalized)
    return normalized.deepcopy()


def _stokes_names_from_wcs(wcs: WCS, n_stokes: int) -> tuple[str, ...]:
    codes = wcs.sub([4]).wcs_pix2world(np.arange(n_stokes, dtype=float), 0)[0]
    names = []
    for code in codes:
        rounded = round(float(code))
        if abs(code - rounded) > 1e-6 or rounded not in _STOKES_NAMES:
            raise ValueError(
                f"The STOKES axis gives the value {code}, which is not a polarization product "
                f"CASA knows (one of {sorted(_STOKES_NAMES)})."
            )
        names.append(_STOKES_NAMES[rounded])
    return tuple(names)


def _check_axes(wcs: WCS) -> None:
    if wcs.naxis != 4:
        raise ValueError(f"A RadioImage WCS needs 4 axes (RA, DEC, FREQ, STOKES), not {wcs.naxis}.")
    ctypes = list(wcs.wcs.ctype)
    if wcs.wcs.lng != 0 or wcs.wcs.lat != 1 or ctypes[2] != "FREQ" or ctypes[3] != "STOKES":
        raise ValueError(
            "A RadioImage WCS must have axes (longitude, latitude, FREQ, STOKES) in that FITS order; "
            f"got CTYPEs {ctypes}."
        )
    pc = wcs.wcs.get_pc()
    for axis in (2, 3):
        others = [other for other in range(4) if other != axis]
        if np.any(pc[axis, others] != 0) or np.any(pc[others, axis] != 0):
            raise ValueError(
                f"The {ctypes[axis]} axis of a RadioImage WCS must not be rotated into other axes "
                "(its PC/CD row and column must be zero off the diagonal)."
            )
    if wcs.wcs.specsys not in _KNOWN_SPECSYS:
        raise ValueError(
            f"A RadioImage WCS needs SPECSYS set to a spectral reference frame "
            f"({', '.join(sorted(_KNOWN_SPECSYS))}); got {wcs.wcs.specsys!r}."
        )


def _check_provenance(provenance: Mapping[str, Any]) -> dict[str, ProvenanceValue]:
    checked: dict[str, ProvenanceValue] = {}
    for key, value in provenance.items():
        if not isinstance(key, str) or not key or not key.isascii() or not key.isprintable():
            raise ValueError(f"Provenance keys must be non-empty printable ASCII strings; got {key!r}.")
        if isinstance(value, np.generic):
            value = value.item()
        if not isinstance(value, str | int | float | bool):
            raise TypeError(
                f"Provenance value of {key!r} is a {type(value).__name__}; only str, int, float and "
                "bool round-trip through FITS."
            )
        checked[key] = value
    return checked


def _header_values(wcs: WCS) -> dict[str, Any]:
    """Return the WCS header as a dict: what two WCSs must agree on to be the same."""
    header = wcs.to_header(relax=_WCS_HEADER_FLAGS)
    return {key: header[key] for key in header if key not in ("COMMENT", "HISTORY", "")}


def _values_differ(mine: Any, theirs: Any, rtol: float) -> bool:
    if isinstance(mine, float) and isinstance(theirs, float):
        if math.isnan(mine) and math.isnan(theirs):
            return False
        return not math.isclose(mine, theirs, rel_tol=rtol, abs_tol=0.0)
    return mine != theirs


class RadioImage:
    """A radio image or cube: pixels, world coordinates, unit, beam(s), provenance.

    Parameters
    ----------
    pixels : array-like
        Pixel values, shape (n_stokes, n_chan, ny, nx); converted to float32
        (not copied if already float32).
    wcs : `astropy.wcs.WCS`
        World coordinates with 4 axes in FITS order: celestial longitude and
        latitude (e.g. RA---SIN, DEC--SIN), FREQ with ``SPECSYS`` set, and
        STOKES. ``RESTFRQ``, ``DATE-OBS`` and ``OBSGEO-X/Y/Z`` are kept when
        present. A normalized copy is kept (see notes).
    brightness_unit : `str`, optional
        Unit of the pixel values, e.g. ``"Jy/beam"``, ``"Jy/pixel"`` or ``""``.
    restoring_beam : `Beam`, `PlaneBeams` or `None`, optional
        One beam for the whole image, one per (channel, Stokes) plane, or none
        (e.g. for a PSF or a model image).
    provenance : `dict` [`str`, `str` | `int` | `float` | `bool`], optional
        What made the image: task, configuration digest, software versions,
        input dataset ids, ... Keys are printable ASCII.

    Raises
    ------
    ValueError
        If the pixel shape, the WCS axes, the beams or the provenance keys
        are not as described above.
    TypeError
        If a provenance value has another type.

    Notes
    -----
    The WCS is normalized by a round trip through its own header written at
    17 significant digits, so an image equals itself after a FITS round
    trip. The spectral and Stokes axes must not be rotated into other axes.
    """

    def __init__(
        self,
        pixels: Any,
        wcs: WCS,
        *,
        brightness_unit: str = "Jy/beam",
        restoring_beam: RestoringBeam = None,
        provenance: Mapping[str, ProvenanceValue] | None = None,
    ) -> None:
        pixels = np.asarray(pixels, dtype=np.float32)
        if pixels.ndim != 4:
            raise ValueError(
                f"RadioImage pixels need 4 axes (n_stokes, n_chan, ny, nx); got shape {pixels.shape}."
            )
        wcs = _normalized_wcs(wcs)
        _check_axes(wcs)
        n_stokes, n_chan, ny, nx = pixels.shape
        wcs.pixel_shape = (nx, ny, n_chan, n_stokes)
        self._stokes = _stokes_names_from_wcs(wcs, n_stokes)
        if isinstance(restoring_beam, PlaneBeams) and (
            restoring_beam.n_chan,
            restoring_beam.n_stokes,
        ) != (n_chan, n_stokes):
            raise ValueError(
                f"Per-plane beams are for {restoring_beam.n_chan} channels x {restoring_beam.n_stokes} "
                f"Stokes but the image has {n_chan} x {n_stokes}."
            )
        if restoring_beam is not None and not isinstance(restoring_beam, Beam | PlaneBeams):
            raise TypeError(
                f"restoring_beam must be a Beam, PlaneBeams or None, not {type(restoring_beam).__name__}."
            )
        self.pixels: np.ndarray = pixels
        """Pixel values, float32, shape (n_stokes, n_chan, ny, nx)."""
        self.wcs: WCS = wcs
        """World coordinates, 4 axes in FITS order (lon, lat, FREQ, STOKES)."""
        self.brightness_unit: str = str(brightness_unit)
        """Unit of the pixel values (FITS ``BUNIT``)."""
        self.restoring_beam: RestoringBeam = restoring_beam
        """One beam, per-plane beams or `None`."""
        self.provenance: dict[str, ProvenanceValue] = _check_provenance(provenance or {})
        """What made the image; str keys, str/int/float/bool values."""

    # -- shape and coordinates -------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """Pixel array shape (n_stokes, n_chan, ny, nx)."""
        return tuple(self.pixels.shape)  # type: ignore[return-value]

    @property
    def n_stokes(self) -> int:
        """Number of Stokes (polarization) planes."""
        return self.pixels.shape[0]

    @property
    def n_chan(self) -> int:
        """Number of frequency channels."""
        return self.pixels.shape[1]

    @property
    def ny(self) -> int:
        """Number of pixels along the latitude (declination) axis."""
        return self.pixels.shape[2]

    @property
    def nx(self) -> int:
        """Number of pixels along the longitude (right ascension) axis."""
        return self.pixels.shape[3]

    @property
    def stokes(self) -> tuple[str, ...]:
        """Name of each Stokes plane, e.g. ``("I", "Q", "U", "V")`` or ``("RR", "LL")``."""
        return self._stokes

    @property
    def frequencies(self) -> np.ndarray:
        """Centre frequency of each channel, Hz, in the frame given by `spectral_frame`."""
        return self.wcs.sub([3]).wcs_pix2world(np.arange(self.n_chan, dtype=float), 0)[0]

    @property
    def spectral_frame(self) -> str:
        """FITS ``SPECSYS`` of the frequency axis, e.g. ``LSRK`` or ``TOPOCENT``."""
        return self.wcs.wcs.specsys

    @property
    def rest_frequency(self) -> float | None:
        """Rest frequency of the line (``RESTFRQ``), Hz, or `None` if not set."""
        value = float(self.wcs.wcs.restfrq)
        return value if value > 0 else None

    # -- derived images --------------------------------------------------------------------------

    def replace(self, **changes: Any) -> RadioImage:
        """Return a new image with some of the constructor arguments replaced.

        Parameters
        ----------
        **changes
            Any of ``pixels``, ``wcs``, ``brightness_unit``,
            ``restoring_beam``, ``provenance``. Pixels not replaced are shared,
            not copied.

        Returns
        -------
        image : `RadioImage`
            The new image.
        """
        arguments: dict[str, Any] = {
            "pixels": self.pixels,
            "wcs": self.wcs,
            "brightness_unit": self.brightness_unit,
            "restoring_beam": self.restoring_beam,
            "provenance": self.provenance,
        }
        unknown = set(changes) - set(arguments)
        if unknown:
            raise TypeError(f"RadioImage.replace got unknown arguments {sorted(unknown)}.")
        arguments.update(changes)
        pixels = arguments.pop("pixels")
        wcs = arguments.pop("wcs")
        return RadioImage(pixels, wcs, **arguments)

    def _with_provenance(self, provenance: Mapping[str, ProvenanceValue]) -> RadioImage:
        """Return ``replace(provenance=provenance)`` without redoing the checks of the other parts.

        Pixels and beams are shared (as `replace` shares pixels), the WCS is copied.
        """
        image = copy.copy(self)
        image.wcs = self.wcs.deepcopy()
        image.provenance = _check_provenance(provenance)
        return image

    def channel_slice(self, start: int, stop: int) -> RadioImage:
        """Return channels ``start`` to ``stop - 1`` as an image of their own.

        Parameters
        ----------
        start : `int`
            First channel (0-based).
        stop : `int`
            One past the last channel; ``start < stop <= n_chan``.

        Returns
        -------
        image : `RadioImage`
            The channels (pixels are a view, not a copy), with ``CRPIX3``
            shifted so that every channel keeps its frequency, and the
            per-plane beams of those channels.

        Raises
        ------
        ValueError
            If the range is empty or outside the cube.
        """
        start, stop = _channel_range(slice(start, stop), self.n_chan)
        return self.replace(
            pixels=self.pixels[:, start:stop],
            wcs=_wcs_for_channels(self.wcs, start),
            restoring_beam=_beam_for_channels(self.restoring_beam, start, stop),
        )

    @staticmethod
    def concatenate_channels(pieces: Sequence[RadioImage]) -> RadioImage:
        """Join consecutive channel ranges of one cube into one image.

        Parameters
        ----------
        pieces : `~collections.abc.Sequence` [`RadioImage`]
            Images of consecutive channels, in order (e.g. channel chunks).

        Returns
        -------
        image : `RadioImage`
            The channels together, with the first piece's coordinates, the
            per-plane beams of all pieces (one beam if they all have the same)
            and no provenance.

        Raises
        ------
        ValueError
            If the pieces are not consecutive channels of the same cube.
        """
        if not pieces:
            raise ValueError("No channels to concatenate.")
        first = pieces[0]
        offset = 0
        for piece in pieces:
            if (piece.n_stokes, piece.ny, piece.nx) != (first.n_stokes, first.ny, first.nx):
                raise ValueError(f"Image of shape {piece.shape} does not continue a cube of {first.shape}.")
            _check_next_channels(first, piece, offset)
            offset += piece.n_chan
        return first.replace(
            pixels=np.concatenate([piece.pixels for piece in pieces], axis=1),
            restoring_beam=_joined_beams(pieces),
            provenance={},
        )

    # -- comparison ------------------------------------------------------------------------------

    def differences(
        self, other: RadioImage, *, rtol: float = 0.0, compare_provenance: bool = True
    ) -> list[str]:
        """Describe how this image differs from another.

        Parameters
        ----------
        other : `RadioImage`
            The image to compare with.
        rtol : `float`, optional
            Relative tolerance for WCS values and beams; 0 asks for exact
            equality. Pixels are always compared bitwise (so equal NaNs match).
        compare_provenance : `bool`, optional
            Whether provenance must be equal too (values and types).

        Returns
        -------
        differences : `list` [`str`]
            One sentence per difference; empty if the images are the same.
        """
        found: list[str] = []
        if self.shape != other.shape:
            return [f"shapes differ: {self.shape} != {other.shape}"]
        if not np.array_equal(self.pixels.view(np.uint32), other.pixels.view(np.uint32)):
            n_differ = int(np.count_nonzero(self.pixels.view(np.uint32) != other.pixels.view(np.uint32)))
            found.append(f"{n_differ} pixel values differ")
        mine, theirs = _header_values(self.wcs), _header_values(other.wcs)
        for key in sorted(set(mine) | set(theirs)):
            if key not in mine or key not in theirs:
                found.append(f"WCS keyword {key} is only in {'this' if key in mine else 'the other'} image")
            elif _values_differ(mine[key], theirs[key], rtol):
                found.append(f"WCS {key} differs: {mine[key]!r} != {theirs[key]!r}")
        if self.brightness_unit != other.brightness_unit:
            found.append(f"brightness units differ: {self.brightness_unit!r} != {other.brightness_unit!r}")
        beam, other_beam = self.restoring_beam, other.restoring_beam
        if type(beam) is not type(other_beam):
            found.append(f"restoring beams differ: {beam!r} != {other_beam!r}")
        elif beam is not None and not beam.isclose(other_beam, rtol=rtol):  # type: ignore[arg-type]
            found.append(f"restoring beams differ: {beam!r} != {other_beam!r}")
        if compare_provenance:
            for key in sorted(set(self.provenance) | set(other.provenance)):
                mine_value, their_value = self.provenance.get(key), other.provenance.get(key)
                if type(mine_value) is not type(their_value) or mine_value != their_value:
                    found.append(f"provenance {key!r} differs: {mine_value!r} != {their_value!r}")
        return found

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RadioImage):
            return NotImplemented
        return not self.differences(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"RadioImage(shape={self.shape}, stokes={self.stokes}, "
            f"freq={self.frequencies[0]:.6g}..{self.frequencies[-1]:.6g} Hz {self.spectral_frame}, "
            f"unit={self.brightness_unit!r}, beam={self.restoring_beam!r})"
        )

    # -- FITS ------------------------------------------------------------------------------------

    def to_fits(self, path: str, *, overwrite: bool = False, header_cards: Sequence[fits.Card] = ()) -> None:
        """Write the image as a FITS file (the layout described in the module docs).

        Parameters
        ----------
        path : `str`
            File to write.
        overwrite : `bool`, optional
            Whether an existing file may be replaced.
        header_cards : `~collections.abc.Sequence` [`astropy.io.fits.Card`], optional
            Cards that describe the image without being part of it (``OBJECT``,
            ``TELESCOP``, ``DATE``, ``HISTORY``, ...; see `radio_clean.fits_cards`),
            added to the primary header after the image's own. Reading the file
            back ignores them.
        """
        _write_fits(self, path, overwrite=overwrite, header_cards=header_cards)

    @classmethod
    def from_fits(cls, path: str, *, channels: tuple[int, int] | slice | None = None) -> RadioImage:
        """Read an image written by `to_fits` (or by the Butler formatter).

        Parameters
        ----------
        path : `str`
            The FITS file.
        channels : `tuple` [`int`, `int`] or `slice`, optional
            Read only channels ``start`` to ``stop - 1`` (a slice must have
            step 1). Only those planes are read from the file.

        Returns
        -------
        image : `RadioImage`
            The image or the channel range.
        """
        return _read_fits(path, channels)


def write_fits_from_channel_pieces(
    path: str, pieces: Iterable[RadioImage], n_chan: int, *, header_cards: Sequence[fits.Card] = ()
) -> None:
    """Write a cube FITS file from consecutive channel ranges, holding one range in memory at a time.

    The file is what `RadioImage.concatenate_channels` followed by
    `RadioImage.to_fits` would write (without provenance), but each piece is
    written into place as it comes and then dropped, so a cube larger than
    memory can be assembled from its chunks.

    Parameters
    ----------
    path : `str`
        File to write (replaced if it exists).
    pieces : `~collections.abc.Iterable` [`RadioImage`]
        Images of consecutive channels, in order; read one at a time.
    n_chan : `int`
        Channels of the whole cube (the sum over the pieces).
    header_cards : `~collections.abc.Sequence` [`astropy.io.fits.Card`], optional
        Cards added to the primary header, as in `RadioImage.to_fits`.
    """
    first: RadioImage | None = None
    beam_pieces = []  # the pieces' beams only (as one-plane-high images are not needed)
    offset = 0
    hdus = None
    try:
        for piece in pieces:
            if first is None:
                first = piece.channel_slice(0, 1).replace(pixels=piece.pixels[:, :1].copy(), provenance={})
                header = _image_to_hdus(first.replace(restoring_beam=None), header_cards)[0].header
                header["NAXIS3"] = n_chan
                if piece.restoring_beam is not None:
                    header["CASAMBM"] = (True, "CASA multiple BEAMS table present")
                _allocate_fits(path, header)
                hdus = fits.open(path, mode="update", memmap=True)
            _check_next_channels(first, piece, offset)
            if offset + piece.n_chan > n_chan:
                raise ValueError(f"The pieces have more than the {n_chan} channels declared.")
            hdus[0].data[:, offset : offset + piece.n_chan] = piece.pixels
            beam_pieces.append(_BeamsOf(piece.restoring_beam, piece.n_chan, piece.n_stokes))
            offset += piece.n_chan
    finally:
        if hdus is not None:
            hdus.close()
    if offset != n_chan:
        raise ValueError(f"The pieces have {offset} channels, not the {n_chan} declared.")
    beams = _joined_beams(beam_pieces)
    if beams is not None:
        if isinstance(beams, Beam):
            beams = PlaneBeams(*(np.full((n_chan, first.n_stokes), value) for value in astuple(beams)))
        with fits.open(path, mode="append") as hdu_list:
            hdu_list.append(_beams_table(beams))


@dataclass(frozen=True)
class _BeamsOf:
    """What `_joined_beams` needs of an image."""

    restoring_beam: RestoringBeam
    n_chan: int
    n_stokes: int


def _check_next_channels(first: RadioImage, piece: RadioImage, offset: int) -> None:
    """Check that ``piece`` starts at channel ``offset`` of the cube that ``first`` starts."""
    expected = _wcs_for_channels(first.wcs, offset).wcs_pix2world([[0, 0, 0, 0]], 0)[0][2]
    found = piece.wcs.wcs_pix2world([[0, 0, 0, 0]], 0)[0][2]
    width = abs(first.wcs.wcs.cdelt[2] * first.wcs.wcs.pc[2][2]) or 1.0
    if abs(found - expected) > 1e-3 * width:
        raise ValueError(
            f"The piece at channel {offset} starts at {float(found)!r} Hz, not at channel {offset} of the "
            f"cube ({float(expected)!r} Hz)."
        )


def _allocate_fits(path: str, header: fits.Header) -> None:
    """Write ``header`` and zeroed room for its data, without making the data in memory."""
    axes = [header[f"NAXIS{axis}"] for axis in range(1, header["NAXIS"] + 1)]
    n_bytes = abs(header["BITPIX"]) // 8 * math.prod(axes)
    with open(path, "wb") as stream:
        stream.write(header.tostring().encode("ascii"))
        stream.truncate(stream.tell() + math.ceil(n_bytes / _FITS_BLOCK) * _FITS_BLOCK)


def _joined_beams(pieces: Sequence[RadioImage | _BeamsOf]) -> RestoringBeam:
    """Beams of consecutive channel ranges: one beam if all have the same, else per plane."""
    beams = [piece.restoring_beam for piece in pieces]
    if all(beam is None for beam in beams):
        return None
    if any(beam is None for beam in beams):
        raise ValueError("Some channel ranges have a restoring beam and others none.")
    if all(isinstance(beam, Beam) and beam == beams[0] for beam in beams):
        return beams[0]
    planes = [[], [], []]
    for piece in pieces:
        beam = piece.restoring_beam
        values = (
            astuple(beam) if isinstance(beam, Beam) else (beam.major_arcsec, beam.minor_arcsec, beam.pa_deg)
        )
        for plane, value in zip(planes, values, strict=True):
            plane.append(np.broadcast_to(value, (piece.n_chan, piece.n_stokes)))
    return PlaneBeams(*(np.concatenate(plane) for plane in planes))


# -- helpers shared by channel_slice and the formatter ---------------------------------------------


def _channel_range(channels: tuple[int, int] | slice, n_chan: int) -> tuple[int, int]:
    """Turn a (start, stop) tuple or a step-1 slice into a checked channel range."""
    if isinstance(channels, slice):
        selection = channels
    elif isinstance(channels, Sequence) and len(channels) == 2:
        selection = slice(*channels)
    else:
        raise ValueError(f"channels must be a (start, stop) tuple or a slice; got {channels!r}.")
    for bound in (selection.start, selection.stop):
        if bound is not None and not isinstance(bound, int | np.integer):
            raise ValueError(f"channel bounds must be integers; got {channels!r}.")
    if selection.step not in (None, 1):
        raise ValueError(f"channels must be a contiguous range (step 1); got step {selection.step}.")
    start, stop, _ = selection.indices(n_chan)
    if start >= stop:
        raise ValueError(f"channels {channels!r} select no channel of a cube with {n_chan} channels.")
    return start, stop


def _wcs_for_channels(wcs: WCS, start: int) -> WCS:
    sliced = wcs.deepcopy()
    sliced.wcs.crpix[2] -= start
    return sliced


def _beam_for_channels(beam: RestoringBeam, start: int, stop: int) -> RestoringBeam:
    return beam.channel_slice(start, stop) if isinstance(beam, PlaneBeams) else beam


def _degrees_reading_back_as(arcsec: float) -> float:
    """Return a degree value that, multiplied by 3600 on reading, gives ``arcsec`` exactly.

    ``arcsec / 3600 * 3600`` is not always ``arcsec`` in floating point; one of
    the few neighbouring doubles of ``arcsec / 3600`` is.
    """
    degrees = arcsec / _ARCSEC_PER_DEG
    for direction in (math.inf, -math.inf):
        candidate = degrees
        for _ in range(4):
            if candidate * _ARCSEC_PER_DEG == arcsec:
                return candidate
            candidate = math.nextafter(candidate, direction)
    return degrees


def _float_card(keyword: str, value: float, comment: str) -> fits.Card:
    """Make a card holding ``value`` at full precision (astropy rounds to 20 characters)."""
    text = repr(float(value)).upper()  # the shortest text that reads back as the same double
    return fits.Card.fromstring(f"{keyword:<8}= {text:>20} / {comment}")


# -- FITS writing and reading ----------------------------------------------------------------------
#
# `_image_to_hdus` says what a file holds, as astropy HDUs; `_write_fits` writes the very same bytes
# without them (astropy's writeto verifies every card and byte-swaps the pixels in place and back,
# and building the binary tables costs more than writing them). `_read_fits` reads files in the
# layout it writes with plain reads; anything else (another writer's file, scaled pixels, other
# column formats, a truncated file) goes to `_read_fits_with_astropy`, the reader of record.

_END_CARD = "END" + " " * 77
_CARD_LENGTH = 80
_PIXEL_CHUNK = 1 << 20  # pixels byte-swapped per write: 4 MB of buffer whatever the image size
# Keyword fields of cards that say nothing about the coordinates: the WCS of a file is read without them.
_NOT_WCS_KEYWORDS = frozenset(
    f"{keyword:<8}"
    for keyword in (
        "BMAJ", "BMIN", "BPA", "BUNIT", "CASAMBM", _LAYOUT_KEYWORD, "ORIGIN", "DATE", "BTYPE", "OBJECT",
        "TELESCOP", "INSTRUME", "OBSERVER", "OBSRA", "OBSDEC", "ALTRVAL", "ALTRPIX", "VELREF", "HISTORY",
        "COMMENT",
    )
)  # fmt: skip
_TABLE_FORMAT = re.compile(r"\s*(\d*)([EJA])\s*")
_TABLE_DTYPES = {"E": ">f4", "J": ">i4"}


def _beam_key(beam: RestoringBeam) -> tuple:
    """What the primary header says about a beam, as a hashable key.

    Values are kept as `float.hex` text: 0.0 and -0.0 are equal (and hash
    alike) as floats, but are written differently.
    """
    if isinstance(beam, Beam):
        return ("one", *(value.hex() for value in astuple(beam)))
    return ("planes",) if isinstance(beam, PlaneBeams) else ()


def _image_cards(brightness_unit: str, beam_key: tuple) -> list[fits.Card]:
    """The primary header cards that follow the WCS: unit, beam, layout, origin."""
    cards = [fits.Card("BUNIT", brightness_unit, "Brightness (pixel) unit")]
    if beam_key[:1] == ("one",):
        major_arcsec, minor_arcsec, pa_deg = (float.fromhex(value) for value in beam_key[1:])
        for keyword, arcsec, comment in (
            ("BMAJ", major_arcsec, "[deg] Restoring beam major axis FWHM"),
            ("BMIN", minor_arcsec, "[deg] Restoring beam minor axis FWHM"),
        ):
            cards.append(_float_card(keyword, _degrees_reading_back_as(arcsec), comment))
        cards.append(_float_card("BPA", pa_deg, "[deg] Restoring beam position angle"))
    elif beam_key == ("planes",):
        cards.append(fits.Card("CASAMBM", True, "CASA multiple BEAMS table present"))
    cards.append(fits.Card(_LAYOUT_KEYWORD, _LAYOUT_VERSION, "radio_clean RadioImage FITS layout version"))
    cards.append(fits.Card("ORIGIN", origin()))
    return cards


def _wcs_header(wcs: WCS) -> fits.Header:
    """The WCS cards of a primary header.

    wcslib writes the observatory as OBSGEO-X/Y/Z only; OBSGEO-L/B/H, which
    it derives from them, are added so that ``WCS(header)`` has nothing to fix.
    """
    header = fits.Header()
    header.extend(wcs.to_header(relax=_WCS_HEADER_FLAGS), update=True)
    geodetic = [float(value) for value in wcs.wcs.obsgeo[3:6]]
    if "OBSGEO-X" in header and all(math.isfinite(value) for value in geodetic):
        for axis, value, comment in zip(
            "LBH",
            geodetic,
            ("[deg] observatory longitude", "[deg] observatory latitude", "[m] observatory height"),
        ):
            header.append(_float_card(f"OBSGEO-{axis}", value, comment))
    return header


def _image_to_hdus(image: RadioImage, header_cards: Sequence[fits.Card] = ()) -> fits.HDUList:
    header = _wcs_header(image.wcs)
    for card in (*_image_cards(image.brightness_unit, _beam_key(image.restoring_beam)), *header_cards):
        header.append(card, bottom=True)  # in the order given, even after COMMENT or HISTORY cards
    hdus = fits.HDUList([fits.PrimaryHDU(data=image.pixels, header=header)])
    if isinstance(image.restoring_beam, PlaneBeams):
        hdus.append(_beams_table(image.restoring_beam))
    if image.provenance:
        hdus.append(_provenance_table(image.provenance))
    return hdus


def _beams_columns(beams: PlaneBeams) -> list[tuple[str, str, str | None, np.ndarray]]:
    """BEAMS table columns (name, TFORM, unit, values) in CASA's order: channel fastest, then pol."""
    chan, pol = np.meshgrid(np.arange(beams.n_chan), np.arange(beams.n_stokes), indexing="xy")
    return [
        ("BMAJ", "1E", "arcsec", beams.major_arcsec.T.ravel()),
        ("BMIN", "1E", "arcsec", beams.minor_arcsec.T.ravel()),
        ("BPA", "1E", "deg", beams.pa_deg.T.ravel()),
        ("CHAN", "1J", None, chan.ravel().astype(np.int32)),
        ("POL", "1J", None, pol.ravel().astype(np.int32)),
    ]


def _beams_cards(beams: PlaneBeams) -> tuple[tuple[Any, ...], ...]:
    """Cards after EXTNAME in the BEAMS table, as `fits.Card` arguments."""
    return (("EXTVER", 1), ("NCHAN", beams.n_chan), ("NPOL", beams.n_stokes))


def _provenance_columns(
    provenance: Mapping[str, ProvenanceValue],
) -> list[tuple[str, str, str | None, np.ndarray]]:
    keys = list(provenance)
    values = [json.dumps(provenance[key], ensure_ascii=True) for key in keys]
    key_width = max(len(key) for key in keys)
    value_width = max(len(value) for value in values)
    return [
        ("KEY", f"{key_width}A", None, np.array(keys)),
        ("VALUE", f"{value_width}A", None, np.array(values)),
    ]


_PROVENANCE_CARDS = (
    ("COMMENT", "VALUE is JSON: strings quoted, true/false for bool, ints without a point."),
)


def _beams_table(beams: PlaneBeams) -> fits.BinTableHDU:
    return _table_hdu(_BEAMS_EXTNAME, _beams_columns(beams), _beams_cards(beams))


def _provenance_table(provenance: Mapping[str, ProvenanceValue]) -> fits.BinTableHDU:
    return _table_hdu(_PROVENANCE_EXTNAME, _provenance_columns(provenance), _PROVENANCE_CARDS)


def _table_hdu(
    name: str,
    columns: Sequence[tuple[str, str, str | None, np.ndarray]],
    cards: Sequence[tuple[Any, ...]],
) -> fits.BinTableHDU:
    table = fits.BinTableHDU.from_columns(
        [
            fits.Column(name=column, format=tform, unit=unit, array=values)
            for column, tform, unit, values in columns
        ],
        name=name,
    )
    for card in cards:
        table.header.append(fits.Card(*card))
    return table


# -- writing without astropy HDUs


def _padded(n_bytes: int) -> int:
    return -(-n_bytes // _FITS_BLOCK) * _FITS_BLOCK


def _header_bytes(texts: Iterable[str]) -> bytes:
    """Join card images into a header: END card, then blanks to a whole FITS block."""
    text = "".join(texts) + _END_CARD
    return (text + " " * (_padded(len(text)) - len(text))).encode("ascii")


def _wcs_header_text(wcs: WCS) -> str:
    """The WCS cards of a primary header, as astropy writes them (made once per distinct WCS)."""
    key = _wcs_key(wcs)
    text = _WCS_HEADER_TEXT.get(key)
    if text is None:
        text = _wcs_header(wcs).tostring(sep="", endcard=False, padding=False)
        _WCS_HEADER_TEXT.put(key, text)
    return text


@functools.lru_cache(maxsize=64)
def _primary_cards_text(shape: tuple[int, ...], extend: bool) -> str:
    """The cards astropy's PrimaryHDU puts before the user's header (EXTEND: HDUList.writeto's)."""
    cards = [
        fits.Card("SIMPLE", True, "conforms to FITS standard"),
        fits.Card("BITPIX", -32, "array data type"),
        fits.Card("NAXIS", len(shape), "number of array dimensions"),
        *(fits.Card(f"NAXIS{axis}", size) for axis, size in enumerate(reversed(shape), start=1)),
    ]
    if extend:
        cards.append(fits.Card("EXTEND", True))
    return "".join(card.image for card in cards)


@functools.lru_cache(maxsize=256)
def _image_cards_text(brightness_unit: str, beam_key: tuple) -> str:
    return "".join(card.image for card in _image_cards(brightness_unit, beam_key))


def _primary_header_bytes(image: RadioImage, *, extend: bool, header_cards: Sequence[fits.Card]) -> bytes:
    return _header_bytes(
        [
            _primary_cards_text(image.shape, extend),
            _wcs_header_text(image.wcs),
            _image_cards_text(image.brightness_unit, _beam_key(image.restoring_beam)),
            *(card.image for card in header_cards),
        ]
    )


@functools.lru_cache(maxsize=256)
def _table_header_bytes(
    name: str,
    formats: tuple[tuple[str, str, str | None], ...],
    row_bytes: int,
    n_rows: int,
    cards: tuple[tuple[Any, ...], ...],
) -> bytes:
    """The header of a binary table HDU, as astropy's from_columns + writeto writes it."""
    header = [
        fits.Card("XTENSION", "BINTABLE", "binary table extension"),
        fits.Card("BITPIX", 8, "array data type"),
        fits.Card("NAXIS", 2, "number of array dimensions"),
        fits.Card("NAXIS1", row_bytes, "length of dimension 1"),
        fits.Card("NAXIS2", n_rows, "length of dimension 2"),
        fits.Card("PCOUNT", 0, "number of group parameters"),
        fits.Card("GCOUNT", 1, "number of groups"),
        fits.Card("TFIELDS", len(formats), "number of table fields"),
    ]
    for number, (column, tform, unit) in enumerate(formats, start=1):
        header.append(fits.Card(f"TTYPE{number}", column))
        header.append(fits.Card(f"TFORM{number}", tform))
        if unit is not None:
            header.append(fits.Card(f"TUNIT{number}", unit))
    header.append(fits.Card("EXTNAME", name, "extension name"))
    header.extend(fits.Card(*card) for card in cards)
    return _header_bytes(card.image for card in header)


def _table_bytes(
    name: str,
    columns: Sequence[tuple[str, str, str | None, np.ndarray]],
    cards: tuple[tuple[Any, ...], ...],
) -> bytes:
    """A binary table HDU, header and data, as astropy's from_columns + writeto writes it."""
    dtype = np.dtype(
        [(column, _TABLE_DTYPES.get(tform[-1]) or f"S{int(tform[:-1])}") for column, tform, _, _ in columns]
    )
    rows = np.zeros(len(columns[0][3]), dtype=dtype)
    for column, _, _, values in columns:
        if dtype[column].kind == "S":
            # astropy turns trailing blanks into NULs (all but a string's first character).
            values = [value.rstrip(" ") or value[:1] for value in values.tolist()]
        rows[column] = values
    header = _table_header_bytes(
        name, tuple(column[:3] for column in columns), dtype.itemsize, len(rows), cards
    )
    data = rows.tobytes()
    return header + data + bytes(_padded(len(data)) - len(data))


def _write_pixels(stream: Any, pixels: np.ndarray) -> None:
    """Write float32 pixels big-endian, a chunk at a time (the image's own array is not touched)."""
    flat = np.ascontiguousarray(pixels, dtype=np.float32).reshape(-1).view(np.uint32)
    buffer = np.empty(min(flat.size, _PIXEL_CHUNK), dtype=">u4")
    for start in range(0, flat.size, _PIXEL_CHUNK):
        part = flat[start : start + _PIXEL_CHUNK]
        chunk = buffer[: part.size]
        np.copyto(chunk, part)  # an integer byte swap: every bit of every float (NaN payloads too) kept
        stream.write(chunk.data)
    n_bytes = 4 * flat.size
    stream.write(bytes(_padded(n_bytes) - n_bytes))


def _write_fits(
    image: RadioImage, path: str, *, overwrite: bool, header_cards: Sequence[fits.Card] = ()
) -> None:
    """Write the file `_image_to_hdus` describes, byte for byte as astropy would, without astropy HDUs."""
    tables = []
    beam = image.restoring_beam
    if isinstance(beam, PlaneBeams):
        tables.append(_table_bytes(_BEAMS_EXTNAME, _beams_columns(beam), _beams_cards(beam)))
    if image.provenance:
        tables.append(
            _table_bytes(_PROVENANCE_EXTNAME, _provenance_columns(image.provenance), _PROVENANCE_CARDS)
        )
    header = _primary_header_bytes(image, extend=bool(tables), header_cards=header_cards)
    if os.path.lexists(path):
        if not overwrite:
            raise OSError(f"File {path!r} already exists. If you mean to replace it then use overwrite=True.")
        os.remove(path)  # as astropy does: a new file, never a write through a link to another one
    with open(path, "xb") as stream:
        stream.write(header)
        _write_pixels(stream, image.pixels)
        for table in tables:
            stream.write(table)


# -- reading without astropy HDUs


class _NotOurLayoutError(Exception):
    """The file is not laid out as `_write_fits` writes; astropy reads it."""


def _read_exactly(stream: Any, buffer: Any) -> None:
    view = memoryview(buffer).cast("B")
    done = 0
    while done < len(view):
        n_read = stream.readinto(view[done:])
        if not n_read:
            raise _NotOurLayoutError("the file ends inside its data")
        done += n_read


def _read_header_text(stream: Any) -> tuple[str, int]:
    """Read the header at the stream's position: its cards before END, and its size on disk."""
    blocks: list[str] = []
    while True:
        block = stream.read(_FITS_BLOCK)
        if len(block) != _FITS_BLOCK or len(blocks) > 1000:
            raise _NotOurLayoutError("no complete header")
        try:
            text = block.decode("ascii")
        except UnicodeDecodeError as err:
            raise _NotOurLayoutError("a header that is not ASCII") from err
        for position in range(0, _FITS_BLOCK, _CARD_LENGTH):
            if text[position : position + _CARD_LENGTH] == _END_CARD:
                blocks.append(text[:position])
                return "".join(blocks), len(blocks) * _FITS_BLOCK
        blocks.append(text)


_KEYWORD_FIELD = re.compile(r"[A-Z0-9_-]* *")
_INTEGER_VALUE = re.compile(r"= +([+-]?[0-9]+) *(?:/.*)?")
_LOGICAL_VALUE = re.compile(r"= +([TF]) *(?:/.*)?")
_STRING_VALUE = re.compile(r"= +'((?:[^']|'')*)' *(?:/.*)?")


class _Cards:
    """The cards of a header, found by keyword (the first of each, as `fits.Header` finds them).

    Integer, logical and string values are read with strict patterns, and
    anything else a caller asks for through `value` is read by astropy's
    own `fits.Card`; a card that does not fit the pattern asked for, and
    any header astropy could read otherwise (lower-case keywords, long
    strings continued on CONTINUE cards), raise `_NotOurLayoutError`.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self._cards: dict[str, str] = {}
        for position in range(0, len(text), _CARD_LENGTH):
            card = text[position : position + _CARD_LENGTH]
            if not _KEYWORD_FIELD.fullmatch(card, 0, 8):
                raise _NotOurLayoutError(f"a keyword this reader does not read: {card[:8]!r}")
            self._cards.setdefault(card[:8].rstrip(), card)
        if "CONTINUE" in self._cards:
            raise _NotOurLayoutError("a long string value")

    def __contains__(self, keyword: str) -> bool:
        return keyword in self._cards

    def _match(self, pattern: re.Pattern, keyword: str) -> re.Match | None:
        card = self._cards.get(keyword)
        if card is None:
            return None
        match = pattern.fullmatch(card, 8)
        if match is None:
            raise _NotOurLayoutError(f"{keyword} has a value this reader does not read")
        return match

    def integer(self, keyword: str, default: int | None = None) -> int:
        match = self._match(_INTEGER_VALUE, keyword)
        if match is None:
            if default is None:
                raise _NotOurLayoutError(f"no {keyword}")
            return default
        return int(match[1])

    def logical(self, keyword: str) -> bool | None:
        match = self._match(_LOGICAL_VALUE, keyword)
        return None if match is None else match[1] == "T"

    def string(self, keyword: str, default: str | None = None) -> str | None:
        match = self._match(_STRING_VALUE, keyword)
        return default if match is None else match[1].replace("''", "'").rstrip(" ")

    def value(self, keyword: str) -> Any:
        return fits.Card.fromstring(self._cards[keyword]).value


def _data_size(cards: _Cards) -> int:
    """Bytes of data (before padding) of an HDU, as the FITS standard defines them."""
    n_axes = cards.integer("NAXIS")
    if not n_axes:
        return 0
    sizes = [cards.integer(f"NAXIS{axis}") for axis in range(1, n_axes + 1)]
    bitpix, pcount, gcount = cards.integer("BITPIX"), cards.integer("PCOUNT", 0), cards.integer("GCOUNT", 1)
    return abs(bitpix) // 8 * gcount * (pcount + math.prod(sizes))


def _file_wcs(cards: _Cards) -> WCS:
    """``WCS(header, naxis=4)`` of a primary header's coordinate cards, made once per distinct set.

    Cards that describe the image rather than its coordinates (beam, unit,
    OBJECT, DATE, HISTORY, ...) are left out, so that images differing only
    in those share one WCS, and what is read back is the WCS that was written.
    """
    text = cards.text
    key = "".join(
        text[position : position + _CARD_LENGTH]
        for position in range(0, len(text), _CARD_LENGTH)
        if text[position : position + 8] not in _NOT_WCS_KEYWORDS
    )
    wcs = _FILE_WCS.get(key)
    if wcs is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(fits.Header.fromstring(key), naxis=4)
        _FILE_WCS.put(key, wcs)
    return wcs


def _table_rows(stream: Any, cards: _Cards, offset: int) -> np.ndarray:
    """The rows of a plain binary table (scalar E and J columns, A strings) as a numpy record array."""
    layout = [cards.integer(keyword) for keyword in ("BITPIX", "NAXIS", "PCOUNT", "GCOUNT")]
    if cards.string("XTENSION") != "BINTABLE" or layout != [8, 2, 0, 1] or "THEAP" in cards:
        raise _NotOurLayoutError("not a plain binary table")
    fields = []
    for number in range(1, cards.integer("TFIELDS") + 1):
        name, tform = cards.string(f"TTYPE{number}"), cards.string(f"TFORM{number}")
        match = _TABLE_FORMAT.fullmatch(tform) if tform is not None else None
        special = ("TSCAL", "TZERO", "TNULL", "TDIM")
        if name is None or match is None or any(f"{key}{number}" in cards for key in special):
            raise _NotOurLayoutError("a table column this reader does not read")
        repeat, code = int(match[1] or 1), match[2]
        if code != "A" and repeat != 1:
            raise _NotOurLayoutError("a vector column")
        fields.append((name, _TABLE_DTYPES.get(code) or f"S{repeat}"))
    try:
        dtype = np.dtype(fields)
    except (TypeError, ValueError) as err:
        raise _NotOurLayoutError("repeated column names") from err
    if dtype.itemsize != cards.integer("NAXIS1"):
        raise _NotOurLayoutError("a row length that is not the sum of its columns")
    rows = np.empty(cards.integer("NAXIS2"), dtype=dtype)
    stream.seek(offset)
    _read_exactly(stream, rows)
    return rows


def _table_strings(column: np.ndarray) -> list[str]:
    """A string column as astropy gives it: trailing NULs and blanks dropped."""
    try:
        return [value.decode("ascii").rstrip() for value in column.tolist()]
    except UnicodeDecodeError as err:
        raise _NotOurLayoutError("a string column that is not ASCII") from err


def _read_our_layout(path: str, channels: tuple[int, int] | slice | None) -> RadioImage:
    with open(path, "rb", buffering=0) as stream:
        file_size = os.fstat(stream.fileno()).st_size
        text, header_size = _read_header_text(stream)
        header = _Cards(text)
        if (
            header.logical("SIMPLE") is not True
            or header.integer("BITPIX") != -32
            or header.integer("NAXIS") != 4
            or any(keyword in header for keyword in ("BSCALE", "BZERO", "BLANK", "GROUPS"))
        ):
            raise _NotOurLayoutError("not a float32 image without scaling")
        data_size = _data_size(header)
        nx, ny, n_chan, n_stokes = (header.integer(f"NAXIS{axis}") for axis in range(1, 5))
        if not data_size:
            raise _NotOurLayoutError("no pixels")
        # The extensions: where the first one of each name starts (as HDUList[name] finds it).
        tables: dict[str, tuple[_Cards, int]] = {}
        offset = header_size + _padded(data_size)
        while offset < file_size:
            stream.seek(offset)
            extension_text, extension_size = _read_header_text(stream)
            extension = _Cards(extension_text)
            name = extension.string("EXTNAME", "").strip().upper()
            tables.setdefault(name, (extension, offset + extension_size))
            offset += extension_size + _padded(_data_size(extension))
        if offset != file_size:
            raise _NotOurLayoutError("the file ends inside an extension")
        start, stop = _channel_range(channels, n_chan) if channels is not None else (0, n_chan)
        # Only the requested planes are read: for each Stokes, channels start..stop-1 are contiguous.
        raw = np.empty((n_stokes, stop - start, ny, nx), dtype=np.uint32)
        plane_bytes = 4 * nx * ny
        for stokes in range(n_stokes):
            stream.seek(header_size + (stokes * n_chan + start) * plane_bytes)
            _read_exactly(stream, raw[stokes])
        if sys.byteorder == "little":
            raw.byteswap(inplace=True)  # FITS is big-endian; the swap is in place, the bits are kept
        pixels = raw.view(np.float32)
        beam: RestoringBeam = None
        if "BMAJ" in header:
            beam = Beam(
                header.value("BMAJ") * _ARCSEC_PER_DEG,
                header.value("BMIN") * _ARCSEC_PER_DEG,
                header.value("BPA"),
            )
        elif header.logical("CASAMBM"):
            if _BEAMS_EXTNAME not in tables:
                raise _NotOurLayoutError("no BEAMS table")
            table, table_offset = tables[_BEAMS_EXTNAME]
            rows = _table_rows(stream, table, table_offset)
            if not {"BMAJ", "BMIN", "BPA", "CHAN", "POL"} <= set(rows.dtype.names):
                raise _NotOurLayoutError("BEAMS columns under other names")
            shape = (table.integer("NCHAN", n_chan), table.integer("NPOL", n_stokes))
            beam = _beams_from_table(rows, shape, n_chan, n_stokes)
        provenance: dict[str, ProvenanceValue] = {}
        if _PROVENANCE_EXTNAME in tables:
            table, table_offset = tables[_PROVENANCE_EXTNAME]
            rows = _table_rows(stream, table, table_offset)
            names = set(rows.dtype.names)
            if not {"KEY", "VALUE"} <= names or {rows.dtype["KEY"].kind, rows.dtype["VALUE"].kind} != {"S"}:
                raise _NotOurLayoutError("PROVENANCE columns under other names or types")
            provenance = _provenance_from_columns(_table_strings(rows["KEY"]), _table_strings(rows["VALUE"]))
        brightness_unit = header.string("BUNIT", "").strip()
    wcs = _file_wcs(header).deepcopy()
    wcs.wcs.crpix[2] -= start
    return RadioImage(
        pixels,
        wcs,
        brightness_unit=brightness_unit,
        restoring_beam=_beam_for_channels(beam, start, stop),
        provenance=provenance,
    )


def _read_fits(path: str, channels: tuple[int, int] | slice | None) -> RadioImage:
    """Read a RadioImage FITS file: directly if it is in our layout, else with astropy."""
    try:
        return _read_our_layout(path, channels)
    except _NotOurLayoutError:
        return _read_fits_with_astropy(path, channels)


def _read_fits_with_astropy(path: str, channels: tuple[int, int] | slice | None) -> RadioImage:
    with fits.open(path, memmap=False, lazy_load_hdus=True) as hdus:
        primary = hdus[0]
        header = primary.header
        if header.get("NAXIS") != 4:
            raise ValueError(f"{path} is not a RadioImage FITS file: its primary HDU is not a 4-axis image.")
        n_stokes, n_chan = header["NAXIS4"], header["NAXIS3"]
        start, stop = _channel_range(channels, n_chan) if channels is not None else (0, n_chan)
        # Section reads only the requested planes from the file, never the whole cube.
        pixels = np.asarray(primary.section[:, start:stop, :, :], dtype=np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header, naxis=4)
        beam: RestoringBeam = None
        if "BMAJ" in header:
            beam = Beam(header["BMAJ"] * _ARCSEC_PER_DEG, header["BMIN"] * _ARCSEC_PER_DEG, header["BPA"])
        elif header.get("CASAMBM", False):
            table = hdus[_BEAMS_EXTNAME]
            shape = (int(table.header.get("NCHAN", n_chan)), int(table.header.get("NPOL", n_stokes)))
            beam = _beams_from_table(table.data, shape, n_chan, n_stokes)
        provenance = {}
        if _has_extension(hdus, _PROVENANCE_EXTNAME):
            data = hdus[_PROVENANCE_EXTNAME].data
            provenance = _provenance_from_columns(data["KEY"], data["VALUE"])
    return RadioImage(
        pixels,
        _wcs_for_channels(wcs, start),
        brightness_unit=header.get("BUNIT", "").strip(),
        restoring_beam=_beam_for_channels(beam, start, stop),
        provenance=provenance,
    )


def read_fits_provenance(path: str) -> dict[str, ProvenanceValue]:
    """Read only the provenance of a RadioImage FITS file (no pixels).

    Parameters
    ----------
    path : `str`
        The FITS file.

    Returns
    -------
    provenance : `dict` [`str`, `str` | `int` | `float` | `bool`]
        The ``PROVENANCE`` table's entries (empty if it has none).
    """
    with fits.open(path, memmap=False, lazy_load_hdus=True) as hdus:
        if not _has_extension(hdus, _PROVENANCE_EXTNAME):
            return {}
        data = hdus[_PROVENANCE_EXTNAME].data
        return _provenance_from_columns(data["KEY"], data["VALUE"])


def _has_extension(hdus: fits.HDUList, extname: str) -> bool:
    try:
        hdus[extname]
    except KeyError:
        return False
    return True


def _beams_from_table(data: Any, shape: tuple[int, int], n_chan: int, n_stokes: int) -> PlaneBeams:
    if shape != (n_chan, n_stokes):
        raise ValueError(f"The BEAMS table is for {shape} planes but the image has {(n_chan, n_stokes)}.")
    arrays = [np.zeros(shape, dtype=np.float32) for _ in range(3)]
    seen = np.zeros(shape, dtype=bool)
    chan, pol = data["CHAN"], data["POL"]
    for array, column in zip(arrays, ("BMAJ", "BMIN", "BPA")):
        array[chan, pol] = data[column]
    seen[chan, pol] = True
    if not seen.all():
        raise ValueError(f"The BEAMS table leaves {int((~seen).sum())} planes without a beam.")
    return PlaneBeams(*arrays)


def _provenance_from_columns(keys: Iterable[Any], values: Iterable[Any]) -> dict[str, ProvenanceValue]:
    return {str(key): json.loads(value) for key, value in zip(keys, values)}


# -- Butler formatter ------------------------------------------------------------------------------


class RadioImageFitsFormatter(FormatterV2):
    """Read and write `RadioImage` datasets as FITS files.

    Read parameter ``channels`` (a ``(start, stop)`` tuple or a step-1
    `slice`) reads only those channels from the file. On write, the Butler's
    provenance (dataset id, run, data ID, inputs, quantum) is added to the
    image's provenance under keys starting with ``LSST.BUTLER.``, replacing
    any such keys the image already had, and the primary header gets the
    cards exportfits writes about a tclean image that the data ID tells
    (``TELESCOP``, ``INSTRUME``, ``OBJECT``, ``BTYPE``, ``OBSRA``/``OBSDEC``,
    ``VELREF``, ...; see `radio_clean.fits_cards.observation_cards`). The
    registry records when a dataset was stored; ``DATE`` is left to export.
    """

    default_extension: ClassVar[str] = ".fits"
    supported_extensions: ClassVar[frozenset[str]] = frozenset({".fits"})
    unsupported_parameters: ClassVar[frozenset[str]] = frozenset()
    can_read_from_local_file: ClassVar[bool] = True

    def read_from_local_file(self, path: str, component: str | None = None, expected_size: int = -1) -> Any:
        if component is not None:
            raise ValueError(f"RadioImage has no components; asked for {component!r}.")
        parameters = self.file_descriptor.parameters or {}
        unknown = set(parameters) - {"channels"}
        if unknown:
            raise ValueError(f"RadioImage reads take only the 'channels' parameter; got {sorted(unknown)}.")
        return _read_fits(path, parameters.get("channels"))

    def write_local_file(self, in_memory_dataset: Any, uri: ResourcePath) -> None:
        if not isinstance(in_memory_dataset, RadioImage):
            raise TypeError(
                f"RadioImageFitsFormatter writes RadioImage objects, not {type(in_memory_dataset).__name__}."
            )
        in_memory_dataset.to_fits(
            uri.ospath, overwrite=True, header_cards=self._header_cards(in_memory_dataset)
        )

    def _header_cards(self, image: RadioImage) -> Sequence[fits.Card]:
        """The cards the data ID gives: telescope and field (none for an image of another kind)."""
        data_id = self.dataset_ref.dataId if self.dataset_ref is not None else {}
        if "instrument" not in data_id or "field" not in data_id:
            return ()
        return observation_cards(
            image.wcs, telescope=str(data_id["instrument"]), object_name=str(data_id["field"])
        )

    def add_provenance(
        self, in_memory_dataset: Any, /, *, provenance: DatasetProvenance | None = None
    ) -> Any:
        if not isinstance(in_memory_dataset, RadioImage):
            return in_memory_dataset
        provenance = provenance if provenance is not None else DatasetProvenance()
        butler_entries = provenance.to_flat_dict(
            self.dataset_ref, prefix=_BUTLER_PROVENANCE_PREFIX, sep=".", simple_types=True, max_inputs=2000
        )
        merged = dict(in_memory_dataset.provenance)
        DatasetProvenance.strip_provenance_from_flat_dict(merged)
        merged.update(butler_entries)
        # Only the provenance changes: no need to check and normalize pixels, WCS and beams again.
        return in_memory_dataset._with_provenance(merged)


# -- building a WCS --------------------------------------------------------------------------------


def make_image_wcs(
    *,
    ra_deg: float,
    dec_deg: float,
    cell_arcsec: float,
    nx: int,
    ny: int,
    frequency_hz: float,
    channel_width_hz: float,
    spectral_frame: str = "LSRK",
    stokes: Iterable[str] = ("I",),
    projection: str = "SIN",
    rest_frequency_hz: float | None = None,
    radesys: str = "ICRS",
) -> WCS:
    """Make the WCS of an image centred on a phase centre, as tclean lays it out.

    Parameters
    ----------
    ra_deg, dec_deg : `float`
        Phase centre (reference value), degrees.
    cell_arcsec : `float`
        Pixel size, arcsec (RA increases to the left, so CDELT1 < 0).
    nx, ny : `int`
        Image size; the phase centre is at 0-based pixel (nx // 2, ny // 2),
        as in tclean.
    frequency_hz : `float`
        Frequency of channel 0, Hz.
    channel_width_hz : `float`
        Channel increment, Hz (negative if frequency decreases).
    spectral_frame : `str`, optional
        Frequency frame, as FITS ``SPECSYS`` (``LSRK``, ``TOPOCENT``, ...) or
        as CASA names it (``TOPO``, ``BARY``, ...).
    stokes : iterable of `str`, optional
        Polarization products, evenly spaced in FITS order (e.g. I, Q, U, V;
        RR, LL; or I, V).
    projection : `str`, optional
        Three-letter FITS projection code.
    rest_frequency_hz : `float`, optional
        Line rest frequency, Hz.
    radesys : `str`, optional
        Celestial reference system (``ICRS`` or ``FK5``, the latter with
        equinox 2000, i.e. CASA's J2000).

    Returns
    -------
    wcs : `astropy.wcs.WCS`
        A four-axis WCS for a `RadioImage`.

    Raises
    ------
    ValueError
        If the frame, Stokes products or reference system is not supported.
    """
    frame = FITS_SPECSYS_FROM_CASA.get(spectral_frame.upper(), spectral_frame.upper())
    if frame not in _KNOWN_SPECSYS:
        raise ValueError(f"Unknown spectral frame {spectral_frame!r}; use one of {sorted(_KNOWN_SPECSYS)}.")
    stokes = tuple(stokes)
    unknown = [name for name in stokes if name not in STOKES_CODES]
    if unknown or not stokes:
        raise ValueError(f"Stokes products must be some of {list(STOKES_CODES)}; got {list(stokes)}.")
    codes = [STOKES_CODES[name] for name in stokes]
    step = codes[1] - codes[0] if len(codes) > 1 else 1
    if step == 0 or any(b - a != step for a, b in zip(codes, codes[1:])):
        raise ValueError(f"Stokes products {list(stokes)} are not evenly spaced on the FITS STOKES axis.")
    if radesys not in ("ICRS", "FK5"):
        raise ValueError(f"radesys must be 'ICRS' or 'FK5' (J2000), not {radesys!r}.")
    wcs = WCS(naxis=4)
    wcs.wcs.ctype = [f"RA---{projection}", f"DEC--{projection}", "FREQ", "STOKES"]
    wcs.wcs.cunit = ["deg", "deg", "Hz", ""]
    wcs.wcs.crval = [ra_deg, dec_deg, frequency_hz, codes[0]]
    wcs.wcs.cdelt = [-cell_arcsec / _ARCSEC_PER_DEG, cell_arcsec / _ARCSEC_PER_DEG, channel_width_hz, step]
    wcs.wcs.crpix = [nx // 2 + 1, ny // 2 + 1, 1, 1]
    wcs.wcs.specsys = frame
    wcs.wcs.radesys = radesys
    if radesys == "FK5":
        wcs.wcs.equinox = 2000.0
    if rest_frequency_hz:
        wcs.wcs.restfrq = rest_frequency_hz
    wcs.wcs.set()
    return wcs
