"""Small simulated MeasurementSets with a known sky, for tests and parity checks.

`simulate_ms` observes a list of `SkyComponent` with casatools' ``simulator``:
real antenna layouts from casadata (``alma/simmos/*.cfg``), an hour-angle track
centred on transit, and visibilities predicted analytically from a CASA
component list (``sm.predict(complist=...)``), optionally with Gaussian
thermal noise (``sm.setnoise(mode='simplenoise')`` + ``sm.corrupt()``).

What is written
---------------
The MS has a ``DATA`` column only. The CASA simulator also creates
``MODEL_DATA`` (set to 1) and ``CORRECTED_DATA`` (a copy of ``DATA``); both are
removed, so every imager reads the same column and nothing mistakes the unit
``MODEL_DATA`` for a sky model. ``WEIGHT`` and ``SIGMA`` are 1 without noise;
with ``noise_jy`` they are set to ``1 / noise_jy**2`` and ``noise_jy`` (the
simulator itself leaves them at 1). There are no autocorrelations, and rows
are flagged only where the simulator flags them (elevation below 10 degrees,
geometric shadowing above 1 per cent).

Conventions (checked against the visibilities in ``tests/test_simulate.py``)
----------------------------------------------------------------------------
- Offsets are direction cosines ``(l, m)`` of the SIN projection about the
  phase centre: ``l`` towards east (increasing RA), ``m`` towards north.
- A component of flux ``S`` at ``(l, m)`` gives, for every correlation that
  measures Stokes I (RR, LL, XX, YY),
  ``V = S exp(+2 pi i (u l + v m + w (n - 1)))``, ``n = sqrt(1 - l**2 - m**2)``,
  with ``(u, v, w)`` the MS ``UVW`` in wavelengths. Cross-hands (RL, LR, XY,
  YX) are zero: the sky is unpolarised and the feeds perfect.
- Gaussian sizes are FWHM and the position angle of the major axis is east of
  north: ``V = S exp(-pi**2 (a**2 u_maj**2 + b**2 u_min**2) / (4 ln 2))`` with
  ``u_maj = u sin(pa) + v cos(pa)``, ``u_min = u cos(pa) - v sin(pa)``.
- Flux follows ``S(nu) = flux_jy * (nu / ref_freq_hz) ** spectral_index`` at
  each channel's centre frequency (TOPO frame).
- ``noise_jy`` is the standard deviation of the real part and of the imaginary
  part of each visibility, each correlation separately.
- No primary beam unless ``primary_beam=True`` (then the simulator multiplies
  each component by the telescope's default voltage-pattern model, per
  channel); the truth always records the true, not the apparent, flux.
- A mosaic (``pointings``) has one ``FIELD`` row per pointing, all with the same
  name as an ALMA mosaic has, each phase-centred on its own pointing centre;
  the pointings are observed in turn, one integration each, over the track.
  Component offsets stay relative to ``phase_centre``, the mosaic's centre.
"""

from __future__ import annotations

__all__ = [
    "ArrayConfig",
    "SimulatedSky",
    "SkyComponent",
    "TrueComponent",
    "read_array_config",
    "simulate_ms",
]

import dataclasses
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Sequence

import numpy as np

from .casa import CasaError, casa_log_forwarded, casatools

_log = logging.getLogger(__name__)

_ARCSEC = math.pi / (180.0 * 3600.0)
_SHAPES = ("point", "gaussian")
_CIRCULAR = ("RR", "RL", "LR", "LL")
_LINEAR = ("XX", "XY", "YX", "YY")
_STOKES_I_CORRELATIONS = ("RR", "LL", "XX", "YY")
_SIMMOS = "alma/simmos"


@dataclasses.dataclass(frozen=True)
class SkyComponent:
    """One unpolarised source of the simulated sky, placed relative to the phase centre."""

    flux_jy: float
    """Integrated Stokes I flux density at the reference frequency, Jy."""
    offset_arcsec: tuple[float, float] = (0.0, 0.0)
    """(east, north) offset from the phase centre: direction cosines ``(l, m)`` in arcsec."""
    shape: str = "point"
    """``"point"`` or ``"gaussian"``."""
    major_arcsec: float = 0.0
    """FWHM of the major axis of a Gaussian, arcsec."""
    minor_arcsec: float = 0.0
    """FWHM of the minor axis of a Gaussian, arcsec."""
    pa_deg: float = 0.0
    """Position angle of the major axis, degrees east of north."""
    spectral_index: float = 0.0
    """``alpha`` in ``S(nu) = flux_jy * (nu / ref_freq_hz) ** alpha``."""

    def __post_init__(self) -> None:
        if not math.isfinite(self.flux_jy):
            raise ValueError(f"SkyComponent flux_jy must be finite, not {self.flux_jy}.")
        if self.shape not in _SHAPES:
            raise ValueError(f"SkyComponent shape must be one of {_SHAPES}, not {self.shape!r}.")
        if len(self.offset_arcsec) != 2 or not all(math.isfinite(v) for v in self.offset_arcsec):
            raise ValueError(
                f"SkyComponent offset_arcsec must be two finite numbers, not {self.offset_arcsec}."
            )
        if math.hypot(*self.offset_arcsec) * _ARCSEC >= 1.0:
            raise ValueError(f"SkyComponent offset {self.offset_arcsec} arcsec is beyond the horizon.")
        if self.shape == "gaussian" and not (self.major_arcsec >= self.minor_arcsec > 0.0):
            raise ValueError(
                "A Gaussian SkyComponent needs major_arcsec >= minor_arcsec > 0, "
                f"not {self.major_arcsec} and {self.minor_arcsec}."
            )
        if not math.isfinite(self.spectral_index):
            raise ValueError(f"SkyComponent spectral_index must be finite, not {self.spectral_index}.")


@dataclasses.dataclass(frozen=True)
class TrueComponent:
    """A `SkyComponent` as placed on the sky: the truth to compare images against."""

    flux_jy: float
    """Integrated Stokes I flux density at ``ref_freq_hz``, Jy."""
    ra_deg: float
    """Right ascension in ``frame``, degrees in [0, 360)."""
    dec_deg: float
    """Declination in ``frame``, degrees."""
    frame: str
    """Direction reference frame of ``ra_deg``/``dec_deg`` (that of the phase centre)."""
    offset_arcsec: tuple[float, float]
    """(east, north) direction cosines about the phase centre, arcsec."""
    shape: str
    major_arcsec: float
    minor_arcsec: float
    pa_deg: float
    spectral_index: float
    ref_freq_hz: float
    """Frequency at which ``flux_jy`` holds."""

    def flux_at(self, freq_hz: float | np.ndarray) -> float | np.ndarray:
        """Return the Stokes I flux density (Jy) at ``freq_hz``."""
        return self.flux_jy * (np.asarray(freq_hz) / self.ref_freq_hz) ** self.spectral_index

    @property
    def direction(self) -> str:
        """The direction as CASA writes it, e.g. ``"J2000 187.5deg 10.0deg"``."""
        return f"{self.frame} {self.ra_deg!r}deg {self.dec_deg!r}deg"


@dataclasses.dataclass(frozen=True)
class ArrayConfig:
    """An antenna layout read from a simulator configuration (``.cfg``) file."""

    path: str
    telescope: str
    """Observatory name from the file's header (``# observatory=...``)."""
    x: tuple[float, ...]
    """ITRF (earth-centred) X of each antenna, metres."""
    y: tuple[float, ...]
    z: tuple[float, ...]
    diameter: tuple[float, ...]
    """Dish diameters, metres."""
    antenna_names: tuple[str, ...]
    pad_names: tuple[str, ...]
    reference: dict = dataclasses.field(compare=False, repr=False, hash=False)
    """Position measure (casatools ``me.position``) of the array's reference point."""

    @property
    def n_antennas(self) -> int:
        """Number of antennas."""
        return len(self.x)

    @property
    def mount(self) -> str:
        """Antenna mount type as the CASA simulator names it."""
        return "EQUATORIAL" if self.telescope.upper() in ("WSRT", "DRAO") else "ALT-AZ"


@dataclasses.dataclass(frozen=True)
class SimulatedSky:
    """What `simulate_ms` wrote and the sky it observed."""

    path: str
    """Absolute path of the MeasurementSet."""
    components: tuple[TrueComponent, ...]
    phase_centre_ra_deg: float
    phase_centre_dec_deg: float
    frame: str
    """Direction frame of the phase centre and of the components' positions."""
    ref_freq_hz: float
    """Reference frequency of the components' fluxes and spectral indices."""
    channel_freqs_hz: tuple[tuple[float, ...], ...]
    """Centre frequency of each channel, per spectral window (TOPO)."""
    correlations: tuple[str, ...]
    telescope: str
    array: str
    """Path of the antenna configuration file."""
    n_antennas: int
    n_rows: int
    field_name: str
    pointings_deg: tuple[tuple[float, float], ...]
    """(RA, Dec) in ``frame``, degrees, of each pointing (``FIELD`` row), in field id order."""
    noise_jy: float
    seed: int
    primary_beam: bool

    def flux_at(self, freq_hz: float | np.ndarray) -> float | np.ndarray:
        """Return the total true Stokes I flux density (Jy) of all components at ``freq_hz``."""
        return sum((c.flux_at(freq_hz) for c in self.components), start=0.0 * np.asarray(freq_hz))

    def write_component_list(self, path: str, *, overwrite: bool = False) -> str:
        """Write the true sky as a CASA component list table.

        Parameters
        ----------
        path : `str`
            Path of the component list table to write.
        overwrite : `bool`, optional
            Replace an existing table at ``path``.

        Returns
        -------
        path : `str`
            Absolute path of the table.

        Raises
        ------
        CasaError
            If ``path`` exists and ``overwrite`` is false, or CASA fails to write it.
        """
        path = _check_target(path, overwrite)
        tool = _component_list(self.components)
        try:
            with casa_log_forwarded():
                if os.path.lexists(path):
                    shutil.rmtree(path)
                tool.rename(path)
        except Exception as err:
            raise CasaError(f"Could not write the component list {path}: {err}") from err
        finally:
            tool.done()
        return path

    def write_model_image(
        self,
        path: str,
        *,
        imsize: int = 256,
        cell_arcsec: float = 2.0,
        channel_freqs_hz: Sequence[float] | None = None,
        overwrite: bool = False,
    ) -> str:
        """Write the true sky as a CASA image in Jy/pixel (not convolved with any beam).

        Parameters
        ----------
        path : `str`
            Path of the CASA image to write.
        imsize : `int`, optional
            Number of pixels along each side; the phase centre is at pixel
            ``(imsize // 2, imsize // 2)`` (0-based), as in tclean.
        cell_arcsec : `float`, optional
            Pixel size, arcsec. Right ascension increases to the left.
        channel_freqs_hz : sequence of `float`, optional
            Evenly spaced channel frequencies of the image's spectral axis.
            Default: one plane at ``ref_freq_hz``.
        overwrite : `bool`, optional
            Replace an existing image at ``path``.

        Returns
        -------
        path : `str`
            Absolute path of the image, shape ``[imsize, imsize, 1, n_chan]``
            (RA, Dec, Stokes I, frequency).

        Raises
        ------
        ValueError
            If the channel frequencies are not evenly spaced or the size is not positive.
        CasaError
            If ``path`` exists and ``overwrite`` is false, or CASA fails to write it.
        """
        freqs = np.asarray([self.ref_freq_hz] if channel_freqs_hz is None else channel_freqs_hz, float)
        if freqs.ndim != 1 or freqs.size == 0:
            raise ValueError("channel_freqs_hz must be a non-empty sequence of frequencies.")
        width = float(freqs[1] - freqs[0]) if freqs.size > 1 else 1.0
        if freqs.size > 1 and not np.allclose(np.diff(freqs), width, rtol=1e-9, atol=0.0):
            raise ValueError("channel_freqs_hz must be evenly spaced for a CASA image spectral axis.")
        if imsize < 1 or not cell_arcsec > 0:
            raise ValueError(f"imsize ({imsize}) and cell_arcsec ({cell_arcsec}) must be positive.")
        path = _check_target(path, overwrite)
        image = casatools.image()
        cl_tool = _component_list(self.components)
        try:
            with casa_log_forwarded():
                image.fromshape(path, [imsize, imsize, 1, freqs.size], overwrite=overwrite)
                csys = image.coordsys()
                csys.setreferencecode(self.frame, "direction", False)
                csys.setprojection("SIN")
                csys.setunits(["rad", "rad", "", "Hz"])
                cell = cell_arcsec * _ARCSEC
                centre = imsize // 2
                csys.setreferencepixel([centre, centre, 0, 0])
                ra0, dec0 = math.radians(self.phase_centre_ra_deg), math.radians(self.phase_centre_dec_deg)
                csys.setreferencevalue([ra0, dec0, 1.0, freqs[0]])
                csys.setincrement([-cell, cell, 1.0, width])
                image.setcoordsys(csys.torecord())
                csys.done()
                image.setbrightnessunit("Jy/pixel")
                image.set(0.0)
                if self.components:
                    image.modify(cl_tool.torecord(), subtract=False, list=False)
        except Exception as err:
            raise CasaError(f"Could not write the model image {path}: {err}") from err
        finally:
            image.close()
            image.done()
            cl_tool.done()
        return path


def _check_target(path: str, overwrite: bool) -> str:
    path = os.path.abspath(path)
    if os.path.lexists(path) and not overwrite:
        raise CasaError(f"{path} already exists; pass overwrite=True to replace it.")
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise CasaError(f"Cannot write {path}: the directory {parent} does not exist.")
    return path


def _component_list(components: Sequence[TrueComponent]) -> casatools.componentlist:
    """Return an open, in-memory CASA component list holding ``components``.

    The spectrum is a one-term power-log-polynomial, ``S(nu) = S0 (nu / nu0) ** c0``,
    which is the spectral-index law. CASA's own ``"spectral index"`` spectrum is not
    used: when it samples the Stokes Q and U of an unpolarised component (casatools
    6.7.5), it scales the zero Q and U by a factor computed from memory it never wrote,
    so the predicted cross-hands (RL, LR, XY, YX) and linear parallel hands
    (XX = I + Q, YY = I - Q) are NaN whenever what the heap held before makes that
    factor infinite or NaN (0 * inf), and 0 otherwise: a NaN that comes and goes with
    what ran earlier in the process. See ``test_prediction_reads_no_uninitialised_memory``.
    """
    measures = casatools.measures()
    tool = casatools.componentlist()
    try:
        for comp in components:
            shape = {"shape": "point"}
            if comp.shape == "gaussian":
                shape = {
                    "shape": "gaussian",
                    "majoraxis": f"{comp.major_arcsec!r}arcsec",
                    "minoraxis": f"{comp.minor_arcsec!r}arcsec",
                    "positionangle": f"{comp.pa_deg!r}deg",
                }
            tool.addcomponent(
                flux=[comp.flux_jy, 0.0, 0.0, 0.0],
                fluxunit="Jy",
                polarization="Stokes",
                dir=measures.direction(comp.frame, f"{comp.ra_deg!r}deg", f"{comp.dec_deg!r}deg"),
                freq=f"{comp.ref_freq_hz!r}Hz",
                spectrumtype="plp",
                index=[comp.spectral_index],
                **shape,
            )
    except Exception:
        tool.done()
        raise
    finally:
        measures.done()
    return tool


def _resolve_config(array: str) -> str:
    if os.path.isfile(array):
        return os.path.abspath(array)
    name = array if array.endswith(".cfg") else f"{array}.cfg"
    path = casatools.ctsys.resolve(f"{_SIMMOS}/{name}")
    if not os.path.isfile(path):
        raise CasaError(
            f"No antenna configuration {array!r}: not a file and not in casadata's {_SIMMOS} "
            "(try e.g. 'vla.d', 'vla.a', 'alma.cycle10.3', 'meerkat')."
        )
    return path


def _local_to_itrf(
    lon: float, lat: float, height: float, east: np.ndarray, north: np.ndarray, up: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convert local tangent-plane offsets (m) about a WGS84 point to earth-centred XYZ (m).

    The same conversion as CASA's ``simutil.locxyz2itrf``, which ``simobserve`` uses.
    """
    a = 6378137.0  # WGS84 semi-major axis
    b = 6356752.3142  # WGS84 semi-minor axis
    sin_lat, cos_lat = math.sin(lat), math.cos(lat)
    prime_vertical = a / math.sqrt(1.0 - (1.0 - (b / a) ** 2) * sin_lat**2)
    radial = (prime_vertical + up + height) * cos_lat - north * sin_lat
    x = radial * math.cos(lon) - east * math.sin(lon)
    y = radial * math.sin(lon) + east * math.cos(lon)
    z = (prime_vertical * (b / a) ** 2 + up + height) * sin_lat + north * cos_lat
    return x, y, z


def read_array_config(array: str) -> ArrayConfig:
    """Read an antenna configuration file of the CASA simulator.

    Parameters
    ----------
    array : `str`
        Path of a ``.cfg`` file, or the name of one in casadata's
        ``alma/simmos`` (``"vla.d"``, ``"alma.cycle10.3"``, ``"meerkat"``...).

    Returns
    -------
    config : `ArrayConfig`
        Antenna positions converted to ITRF, with the reference position.

    Raises
    ------
    CasaError
        If the file is missing or malformed, uses UTM coordinates (not
        supported), or gives local coordinates for an observatory CASA does
        not know and without a ``COFA=lon,lat`` header.

    Notes
    -----
    The format is that of ``simutil.readantenna``: ``# key=value`` header lines
    (``observatory``, ``coordsys`` = ``XYZ`` (ITRF) or ``LOC`` (local tangent
    plane: east, north, up metres about the observatory), optionally ``COFA``),
    then rows of ``x y z diameter [pad [antenna]]``. Local coordinates are
    converted to ITRF here as ``simobserve`` does; ``sm.setconfig`` is always
    given global coordinates, because its own ``coordsystem='local'`` places
    the antennas about 2 m away from ``simobserve``'s positions.
    """
    path = _resolve_config(array)
    header: dict[str, str] = {}
    rows: list[list[str]] = []
    try:
        with open(path) as stream:
            for line in stream:
                if line.startswith("#"):
                    pair = line[1:].split("=")
                    if len(pair) == 2:
                        header[pair[0].replace("#", "").strip().lower()] = pair[1].replace("#", "").strip()
                    continue
                cols = line.partition("#")[0].split()
                if len(cols) >= 4:
                    rows.append(cols)
        coords = np.array([[float(v) for v in cols[:4]] for cols in rows]).reshape(-1, 4)
    except (OSError, ValueError) as err:
        raise CasaError(f"Cannot read the antenna configuration {path}: {err}") from err
    if len(rows) < 2:
        raise CasaError(f"The antenna configuration {path} lists fewer than two antennas.")
    pads = tuple(cols[4] if len(cols) > 4 else f"A{i:02d}" for i, cols in enumerate(rows))
    names = tuple(cols[5] if len(cols) > 5 else pad for cols, pad in zip(rows, pads))
    coordsys = header.get("coordsys", "").split()[:1]
    coordsys = coordsys[0].upper() if coordsys else ""
    telescope = header.get("observatory", "SIMULATED")

    measures = casatools.measures()
    try:
        known = {name.lower(): name for name in measures.obslist()}
        reference = None
        if telescope.lower() in known:
            reference = measures.measure(measures.observatory(known[telescope.lower()]), "WGS84")
        else:  # e.g. ALMASD: a known observatory whose name is part of this one
            partial = [name for low, name in known.items() if low in telescope.lower()]
            if partial:
                reference = measures.measure(measures.observatory(max(partial, key=len)), "WGS84")
        if "cofa" in header:
            try:
                lon_deg, lat_deg = (float(v) for v in header["cofa"].split(","))
            except ValueError as err:
                raise CasaError(f"{path}: COFA must be 'longitude,latitude' in degrees: {err}") from err
            reference = measures.position("WGS84", f"{lon_deg}deg", f"{lat_deg}deg", "0m")

        x, y, z = coords[:, 0], coords[:, 1], coords[:, 2]
        if coordsys == "XYZ":
            if reference is None:
                reference = measures.measure(
                    measures.position("ITRF", f"{x.mean()}m", f"{y.mean()}m", f"{z.mean()}m"), "WGS84"
                )
        elif coordsys == "LOC":
            if reference is None:
                raise CasaError(
                    f"{path} gives local antenna coordinates for observatory {telescope!r}, which CASA "
                    "does not know; add a '# COFA=lon,lat' header line."
                )
            x, y, z = _local_to_itrf(
                reference["m0"]["value"], reference["m1"]["value"], reference["m2"]["value"], x, y, z
            )
        else:
            raise CasaError(
                f"{path} has coordsys={coordsys or 'nothing'}; only XYZ and LOC configurations are "
                "supported (UTM is not)."
            )
    finally:
        measures.done()
    return ArrayConfig(
        path=path,
        telescope=telescope,
        x=tuple(float(v) for v in x),
        y=tuple(float(v) for v in y),
        z=tuple(float(v) for v in z),
        diameter=tuple(float(v) for v in coords[:, 3]),
        antenna_names=names,
        pad_names=pads,
        reference=reference,
    )


def _parse_phase_centre(phase_centre: str | tuple[float, float]) -> tuple[str, float, float]:
    """Return (frame, ra_rad, dec_rad) of a phase centre."""
    if isinstance(phase_centre, str):
        parts = phase_centre.split()
        if len(parts) != 3:
            raise ValueError(
                f"phase_centre must look like 'J2000 12h30m00s +10d00m00s', not {phase_centre!r}."
            )
        frame, ra_text, dec_text = parts
    else:
        frame = "J2000"
        ra_text, dec_text = (f"{float(v)!r}deg" for v in phase_centre)
    frame = frame.upper()
    if frame not in ("J2000", "ICRS"):
        raise ValueError(f"phase_centre frame must be J2000 or ICRS, not {frame!r}.")
    quanta = casatools.quanta()
    try:
        ra = quanta.quantity(ra_text)
        dec = quanta.quantity(dec_text)
        if not (quanta.compare(ra, "1rad") and quanta.compare(dec, "1rad")):
            raise ValueError(f"phase_centre {phase_centre!r} does not give two angles.")
        ra_rad = quanta.convert(ra, "rad")["value"]
        dec_rad = quanta.convert(dec, "rad")["value"]
    finally:
        quanta.done()
    if not abs(dec_rad) <= math.pi / 2:
        raise ValueError(f"phase_centre declination {dec_text} is outside [-90, 90] degrees.")
    return frame, ra_rad % (2 * math.pi), dec_rad


def _offset_direction(offset_arcsec: Sequence[float], ra0: float, dec0: float) -> tuple[float, float]:
    """Return (ra, dec) in radians of SIN-projection offsets (east, north, arcsec) about (ra0, dec0)."""
    east, north = (v * _ARCSEC for v in offset_arcsec)
    up = math.sqrt(1.0 - east * east - north * north)
    dec = math.asin(north * math.cos(dec0) + up * math.sin(dec0))
    ra = ra0 + math.atan2(east, up * math.cos(dec0) - north * math.sin(dec0))
    return ra % (2 * math.pi), dec


def _place(component: SkyComponent, frame: str, ra0: float, dec0: float, ref_freq_hz: float) -> TrueComponent:
    """Put ``component`` on the sky: invert the SIN projection about (ra0, dec0)."""
    ra, dec = _offset_direction(component.offset_arcsec, ra0, dec0)
    return TrueComponent(
        flux_jy=float(component.flux_jy),
        ra_deg=math.degrees(ra) % 360.0,
        dec_deg=math.degrees(dec),
        frame=frame,
        offset_arcsec=(float(component.offset_arcsec[0]), float(component.offset_arcsec[1])),
        shape=component.shape,
        major_arcsec=float(component.major_arcsec),
        minor_arcsec=float(component.minor_arcsec),
        pa_deg=float(component.pa_deg),
        spectral_index=float(component.spectral_index),
        ref_freq_hz=float(ref_freq_hz),
    )


def _default_correlations(telescope: str) -> str:
    # Like simobserve: VLA-family and GMRT have circular feeds, everything else linear.
    upper = telescope.upper()
    return "RR LL" if "VLA" in upper or "GMRT" in upper else "XX YY"


def simulate_ms(
    path: str,
    components: Sequence[SkyComponent],
    *,
    array: str = "vla.d",
    phase_centre: str | tuple[float, float] = "J2000 12h30m00s +10d00m00s",
    freq_start_hz: float = 1.4e9,
    chan_width_hz: float = 16e6,
    n_chan: int = 4,
    n_spw: int = 1,
    ref_freq_hz: float | None = None,
    hours: float = 1.0,
    integration_s: float = 60.0,
    date: str = "2025/01/01",
    noise_jy: float = 0.0,
    seed: int = 1,
    correlations: str | None = None,
    telescope: str | None = None,
    field_name: str = "SIM",
    pointings: Sequence[tuple[float, float]] | None = None,
    primary_beam: bool = False,
    overwrite: bool = False,
) -> SimulatedSky:
    """Simulate an interferometric observation of a known sky into a new MeasurementSet.

    Parameters
    ----------
    path : `str`
        Path of the MS to write. Its directory must exist.
    components : sequence of `SkyComponent`
        The sky. May be empty (then ``DATA`` is zero, or noise only).
    array : `str`, optional
        Antenna configuration: a name in casadata's ``alma/simmos`` (``"vla.d"``,
        ``"vla.a"``, ``"alma.cycle10.3"``, ``"meerkat"``...) or a ``.cfg`` path.
    phase_centre : `str` or `tuple` [`float`, `float`], optional
        ``"FRAME RA DEC"`` in CASA notation (frame J2000 or ICRS), or (RA, Dec)
        in J2000 degrees. Also the pointing centre.
    freq_start_hz : `float`, optional
        Centre frequency of the first channel of the first spectral window.
    chan_width_hz : `float`, optional
        Channel width and spacing (positive).
    n_chan : `int`, optional
        Channels per spectral window.
    n_spw : `int`, optional
        Number of spectral windows, contiguous in frequency: window ``k``
        starts at ``freq_start_hz + k * n_chan * chan_width_hz``.
    ref_freq_hz : `float`, optional
        Reference frequency of the fluxes and spectral indices. Default: the
        mean of all channel frequencies (the band centre).
    hours : `float`, optional
        Length of the track, centred on transit (hour angle 0).
    integration_s : `float`, optional
        Integration time of each row.
    date : `str`, optional
        UTC date (``YYYY/MM/DD``) of the observation; transit follows it.
    noise_jy : `float`, optional
        Standard deviation of the thermal noise added to the real and to the
        imaginary part of every visibility, Jy. 0 for none.
    seed : `int`, optional
        Seed of the noise generator (positive): equal seeds give equal noise.
    correlations : `str`, optional
        Correlation products, e.g. ``"RR LL"``, ``"RR RL LR LL"``, ``"XX YY"``.
        Default: ``"RR LL"`` for VLA-family telescopes and GMRT, else ``"XX YY"``.
    telescope : `str`, optional
        Telescope name to record (it selects the primary beam model).
        Default: the configuration file's observatory.
    field_name : `str`, optional
        Name of the field (of every pointing of a mosaic).
    pointings : sequence of `tuple` [`float`, `float`], optional
        A mosaic: the (east, north) offsets, arcsec, of each pointing centre
        from ``phase_centre`` (direction cosines, as component offsets). Each
        pointing is a ``FIELD`` row named ``field_name`` and phase-centred on
        itself; the pointings are observed in turn, one integration each,
        throughout the track, so each needs ``hours * 3600 / integration_s``
        to be at least the number of pointings. Default: one pointing at
        ``phase_centre``. Use ``primary_beam=True`` for a mosaic to mean
        anything.
    primary_beam : `bool`, optional
        Attenuate the components by the telescope's default primary beam.
    overwrite : `bool`, optional
        Replace an existing ``path``.

    Returns
    -------
    sky : `SimulatedSky`
        The MS path and the truth: component positions (RA/Dec), fluxes,
        spectral indices, reference and channel frequencies.

    Raises
    ------
    ValueError
        If a parameter is out of range.
    CasaError
        If ``path`` exists and ``overwrite`` is false, its directory does not
        exist, the array configuration cannot be used, or the simulator fails.

    Notes
    -----
    The MS is built in a hidden temporary directory next to ``path`` and
    renamed into place when complete; no temporary files are left behind. See
    the module docstring for what is written and for the conventions.
    """
    if not (n_chan >= 1 and n_spw >= 1):
        raise ValueError(f"n_chan ({n_chan}) and n_spw ({n_spw}) must be at least 1.")
    if not (freq_start_hz > 0 and chan_width_hz > 0):
        raise ValueError(f"freq_start_hz ({freq_start_hz}) and chan_width_hz ({chan_width_hz}) must be > 0.")
    if not (hours > 0 and integration_s > 0 and integration_s <= hours * 3600.0):
        raise ValueError(f"Need 0 < integration_s ({integration_s}) <= hours * 3600 (hours={hours}).")
    if not (noise_jy >= 0 and math.isfinite(noise_jy)):
        raise ValueError(f"noise_jy must be >= 0, not {noise_jy}.")
    if not (isinstance(seed, int) and seed > 0):
        raise ValueError(f"seed must be a positive integer, not {seed!r}.")
    if not field_name:
        raise ValueError("field_name must not be empty.")
    offsets = [(0.0, 0.0)] if pointings is None else [tuple(map(float, p)) for p in pointings]
    if not offsets or any(
        len(p) != 2 or not all(math.isfinite(v) for v in p) or math.hypot(*p) * _ARCSEC >= 1.0
        for p in offsets
    ):
        raise ValueError(
            f"pointings must be a non-empty list of (east, north) offsets in arcsec, not {pointings!r}."
        )
    if len(offsets) > round(hours * 3600.0 / integration_s):
        raise ValueError(
            f"{len(offsets)} pointings need at least as many integrations of {integration_s} s; "
            f"hours={hours} gives {round(hours * 3600.0 / integration_s)}."
        )
    components = list(components)
    for comp in components:
        if not isinstance(comp, SkyComponent):
            raise TypeError(f"components must be SkyComponent instances, not {type(comp).__name__}.")

    path = _check_target(path, overwrite)
    config = read_array_config(array)
    telescope = telescope or config.telescope
    corr = (correlations or _default_correlations(telescope)).upper().split()
    one_basis = set(corr) <= set(_CIRCULAR) or set(corr) <= set(_LINEAR)
    if not corr or len(set(corr)) != len(corr) or not one_basis:
        raise ValueError(
            f"correlations must be distinct products all from {_CIRCULAR} or all from {_LINEAR}, "
            f"not {correlations!r}."
        )
    corr = sorted(corr, key=(_CIRCULAR if corr[0] in _CIRCULAR else _LINEAR).index)
    feed = "perfect R L" if corr[0] in _CIRCULAR else "perfect X Y"

    frame, ra0, dec0 = _parse_phase_centre(phase_centre)
    spw_freqs = [
        tuple(freq_start_hz + (k * n_chan + i) * chan_width_hz for i in range(n_chan)) for k in range(n_spw)
    ]
    if ref_freq_hz is None:
        ref_freq_hz = float(np.mean(spw_freqs))
    if not ref_freq_hz > 0:
        raise ValueError(f"ref_freq_hz must be > 0, not {ref_freq_hz}.")
    truth = tuple(_place(c, frame, ra0, dec0, ref_freq_hz) for c in components)
    pointing_directions = [_offset_direction(p, ra0, dec0) for p in offsets]

    name = os.path.basename(path)
    scratch = tempfile.mkdtemp(prefix=f".radio_clean-tmp-{name}-", dir=os.path.dirname(path))
    try:
        partial = os.path.join(scratch, name)
        _observe(
            partial,
            config,
            telescope=telescope,
            frame=frame,
            ra0=ra0,
            dec0=dec0,
            spw_freqs=spw_freqs,
            chan_width_hz=chan_width_hz,
            correlations=" ".join(corr),
            feed=feed,
            field_name=field_name,
            pointing_directions=pointing_directions,
            hours=hours,
            integration_s=integration_s,
            date=date,
            truth=truth,
            complist=os.path.join(scratch, "sky.cl"),
            primary_beam=primary_beam,
            noise_jy=noise_jy,
            seed=seed,
        )
        n_rows = _finish_columns(partial, noise_jy, field_name)
        if os.path.lexists(path):
            if not overwrite:
                raise CasaError(f"{path} appeared while simulating; not replacing it.")
            os.rename(path, os.path.join(scratch, "replaced"))
        os.rename(partial, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    _log.info(
        "Simulated %s: %d components, %s with %d antennas, %d rows, noise %g Jy.",
        path,
        len(truth),
        os.path.basename(config.path),
        config.n_antennas,
        n_rows,
        noise_jy,
    )
    return SimulatedSky(
        path=path,
        components=truth,
        phase_centre_ra_deg=math.degrees(ra0),
        phase_centre_dec_deg=math.degrees(dec0),
        frame=frame,
        ref_freq_hz=float(ref_freq_hz),
        channel_freqs_hz=tuple(spw_freqs),
        correlations=tuple(corr),
        telescope=telescope,
        array=config.path,
        n_antennas=config.n_antennas,
        n_rows=n_rows,
        field_name=field_name,
        pointings_deg=tuple((math.degrees(ra), math.degrees(dec)) for ra, dec in pointing_directions),
        noise_jy=float(noise_jy),
        seed=seed,
        primary_beam=primary_beam,
    )


def _observe(
    ms_path: str,
    config: ArrayConfig,
    *,
    telescope: str,
    frame: str,
    ra0: float,
    dec0: float,
    spw_freqs: list[tuple[float, ...]],
    chan_width_hz: float,
    correlations: str,
    feed: str,
    field_name: str,
    pointing_directions: list[tuple[float, float]],
    hours: float,
    integration_s: float,
    date: str,
    truth: tuple[TrueComponent, ...],
    complist: str,
    primary_beam: bool,
    noise_jy: float,
    seed: int,
) -> None:
    """Run the CASA simulator: set-up, observe, predict, corrupt."""
    measures = casatools.measures()
    simulator = casatools.simulator()
    step = "opening the MS"
    try:
        with casa_log_forwarded():
            if truth:
                step = "writing the component list"
                cl_tool = _component_list(truth)
                try:
                    cl_tool.rename(complist)
                finally:
                    cl_tool.done()
            step = "opening the MS"
            _check(simulator.open(ms_path), step)
            step = "setting the antenna configuration"
            _check(
                simulator.setconfig(
                    telescopename=telescope,
                    x=list(config.x),
                    y=list(config.y),
                    z=list(config.z),
                    dishdiameter=list(config.diameter),
                    mount=[config.mount],
                    antname=list(config.antenna_names),
                    padname=list(config.pad_names),
                    coordsystem="global",
                    referencelocation=config.reference,
                ),
                step,
            )
            step = "setting the spectral windows"
            for k, freqs in enumerate(spw_freqs):
                _check(
                    simulator.setspwindow(
                        spwname=f"SPW{k}",
                        freq=f"{freqs[0]!r}Hz",
                        deltafreq=f"{chan_width_hz!r}Hz",
                        freqresolution=f"{chan_width_hz!r}Hz",
                        nchannels=len(freqs),
                        refcode="TOPO",
                        stokes=correlations,
                    ),
                    step,
                )
            step = "setting the feeds"
            _check(simulator.setfeed(mode=feed, pol=[""]), step)
            step = "setting the field"
            # The simulator finds a field by its name: distinct names here, the common one after.
            names = _pointing_names(field_name, len(pointing_directions))
            for name, (ra, dec) in zip(names, pointing_directions):
                _check(
                    simulator.setfield(
                        sourcename=name,
                        sourcedirection=measures.direction(frame, f"{ra!r}rad", f"{dec!r}rad"),
                    ),
                    step,
                )
            step = "setting limits and times"
            _check(simulator.setlimits(shadowlimit=0.01, elevationlimit="10deg"), step)
            _check(simulator.setauto(autocorrwt=0.0), step)
            try:
                reference_time = measures.epoch("UTC", date)
            except Exception as err:
                raise ValueError(f"date must be a UTC date such as '2025/01/01', not {date!r}.") from err
            _check(
                simulator.settimes(
                    integrationtime=f"{integration_s!r}s", usehourangle=True, referencetime=reference_time
                ),
                step,
            )
            step = "observing"
            for name, start, stop in _scans(names, hours, integration_s):
                for k in range(len(spw_freqs)):
                    _check(
                        simulator.observe(
                            sourcename=name, spwname=f"SPW{k}", starttime=f"{start!r}s", stoptime=f"{stop!r}s"
                        ),
                        step,
                    )
            if truth:
                step = "predicting visibilities"
                if primary_beam:
                    _check(simulator.setvp(dovp=True, usedefaultvp=True), step)
                _check(simulator.predict(complist=complist, incremental=False), step)
            if noise_jy > 0:
                step = "adding noise"
                _check(simulator.setseed(seed), step)
                _check(simulator.setnoise(mode="simplenoise", simplenoise=f"{noise_jy!r}Jy"), step)
                _check(simulator.corrupt(), step)
            step = "closing the MS"
            _check(simulator.close(), step)
    except (CasaError, ValueError):
        raise
    except Exception as err:
        raise CasaError(f"The CASA simulator failed while {step} for {ms_path}: {err}") from err
    finally:
        simulator.done()
        measures.done()


def _check(result: object, step: str) -> None:
    # casatools' simulator returns False (and logs SEVERE) instead of raising.
    if result is False:
        raise CasaError(f"The CASA simulator failed while {step} (see the radio_clean.casa log).")


def _pointing_names(field_name: str, n_pointings: int) -> list[str]:
    """Names the simulator knows the pointings by until `_finish_columns` gives them ``field_name``."""
    return [field_name] if n_pointings == 1 else [f"{field_name}-pointing{k}" for k in range(n_pointings)]


def _scans(names: list[str], hours: float, integration_s: float) -> list[tuple[str, float, float]]:
    """(field, start, stop) of each scan, in seconds of hour angle: one field per scan over the track.

    One field: one scan over the whole track. Several: the fields in turn, one
    integration each, as a mosaic is observed, over the track centred on transit.
    """
    half = hours * 1800.0
    if len(names) == 1:
        return [(names[0], -half, half)]
    n_integrations = round(hours * 3600.0 / integration_s)
    return [
        (names[k % len(names)], -half + k * integration_s, -half + (k + 1) * integration_s)
        for k in range(n_integrations)
    ]


def _finish_columns(ms_path: str, noise_jy: float, field_name: str) -> int:
    """Drop MODEL_DATA and CORRECTED_DATA; set WEIGHT/SIGMA for the noise; name every field ``field_name``."""
    table = casatools.table()
    try:
        with casa_log_forwarded():
            for subtable in ("FIELD", "SOURCE"):
                if os.path.isdir(os.path.join(ms_path, subtable)):
                    table.open(os.path.join(ms_path, subtable), nomodify=False)
                    if table.nrows():
                        table.putcol("NAME", np.array([field_name] * table.nrows()))
                    table.close()
            table.open(ms_path, nomodify=False)
            extra = [c for c in ("MODEL_DATA", "CORRECTED_DATA") if c in table.colnames()]
            if extra:
                table.removecols(extra)
            if noise_jy > 0:
                shape = table.getcol("SIGMA").shape
                table.putcol("SIGMA", np.full(shape, noise_jy))
                table.putcol("WEIGHT", np.full(shape, 1.0 / noise_jy**2))
            n_rows = table.nrows()
            table.flush()
    except Exception as err:
        raise CasaError(f"Could not finish the simulated MS {ms_path}: {err}") from err
    finally:
        table.close()
    return int(n_rows)
