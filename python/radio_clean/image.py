"""Radio images as Butler datasets: the `RadioImage` data model, its beams and WCS.

A `RadioImage` is a cube of float32 pixels with axes (Stokes, channel, y, x)
in numpy order, which is the numpy order of a FITS file whose axes are RA,
DEC, FREQ, STOKES (CASA's ``exportfits`` with its default ``stokeslast=True``).
Its world coordinates are a four-axis `astropy.wcs.WCS` in FITS axis order.
How an image is laid out in a FITS file is `radio_clean.image_fits`; the
Butler formatter is `radio_clean.formatters.RadioImageFitsFormatter`.

WCSs, which take about a millisecond of Python to build from a header, are
built once per distinct header and copied.
"""

from __future__ import annotations

__all__ = [
    "FITS_SPECSYS_FROM_CASA",
    "STOKES_CODES",
    "Beam",
    "PlaneBeams",
    "ProvenanceValue",
    "RadioImage",
    "RestoringBeam",
    "make_image_wcs",
]

import copy
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, WCSHDO_P14, WCSHDO_P17, FITSFixedWarning, WCSHDO_safe

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
"""FITS ``SPECSYS`` value of each CASA spectral reference frame.

CASA's ``Undefined`` frame (tclean's ``specmode='cubedata'``: the data's
frequencies, no Doppler tracking) has none: its images have no ``SPECSYS``,
as CASA's exportfits writes them, and an empty `RadioImage.spectral_frame`.
"""

_KNOWN_SPECSYS = frozenset(FITS_SPECSYS_FROM_CASA.values()) | {""}

# wcslib writes 12-14 significant digits by default; 17 makes the FITS round trip exact.
_WCS_HEADER_FLAGS = WCSHDO_P17 | WCSHDO_safe
# What `WCS.to_header` asks wcslib for when given _WCS_HEADER_FLAGS (it adds WCSHDO_P14): the text
# wcslib writes with these flags is all that WCS.to_header(relax=_WCS_HEADER_FLAGS) is made of.
_WCSLIB_HEADER_FLAGS = WCSHDO_P14 | _WCS_HEADER_FLAGS

_ARCSEC_PER_DEG = 3600.0


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
            f"({', '.join(sorted(FITS_SPECSYS_FROM_CASA.values()))}), or no SPECSYS (no frame, "
            f"tclean's specmode='cubedata'); got {wcs.wcs.specsys!r}."
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
        """FITS ``SPECSYS`` of the frequency axis, e.g. ``LSRK`` or ``TOPOCENT``.

        Empty for an image in no frame (CASA's ``Undefined``, ``specmode='cubedata'``).
        """
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
        from .image_fits import write_fits

        write_fits(self, path, overwrite=overwrite, header_cards=header_cards)

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
        from .image_fits import read_fits

        return read_fits(path, channels)


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


# -- helpers shared by channel_slice and FITS reading ---------------------------------------------


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
        as CASA names it (``TOPO``, ``BARY``, ...); ``Undefined`` or an empty
        string for none (tclean's ``specmode='cubedata'``).
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
    frame = "" if frame == "UNDEFINED" else frame
    if frame not in _KNOWN_SPECSYS:
        raise ValueError(
            f"Unknown spectral frame {spectral_frame!r}; use one of "
            f"{sorted(FITS_SPECSYS_FROM_CASA.values())} or 'Undefined'."
        )
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


def __getattr__(name: str) -> Any:
    # Repositories written before the formatters moved name this one in their datastore records.
    if name == "RadioImageFitsFormatter":
        from .formatters import RadioImageFitsFormatter

        return RadioImageFitsFormatter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
