"""RadioImage <-> CASA images on disk."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
from typing import Any

import numpy as np
from astropy import units
from astropy.wcs import WCS

from ..image import FITS_SPECSYS_FROM_CASA, STOKES_CODES, Beam, PlaneBeams, RadioImage
from ._log import CasaError, casa_log_forwarded
from ._setup import casatools

__all__ = ["common_beam", "read_casa_image", "write_casa_image"]

_logger = logging.getLogger(__name__)

# ==================================================================================================
# RadioImage <-> CASA image on disk.
#
# Coordinates go through casatools coordinate-system records (not FITS): CASA's own FITS writer
# prints header values with 13 significant digits, the records carry full doubles. Direction
# values are written in degrees; CASA converts them to radians and back, so a RadioImage -> CASA
# -> RadioImage round trip is exact for pixels, beams and provenance and good to ~1e-16 relative
# for coordinates (e.g. DEC -30 comes back as -29.999999999999996).
# ==================================================================================================

# CASA direction reference -> (FITS longitude/latitude CTYPE prefixes, RADESYS, EQUINOX).
_CASA_DIRECTION_SYSTEMS: dict[str, tuple[str, str, str, float | None]] = {
    "J2000": ("RA", "DEC", "FK5", 2000.0),
    "ICRS": ("RA", "DEC", "ICRS", None),
    "B1950": ("RA", "DEC", "FK4", 1950.0),
    # The VLA's old B1950 variant; CASA's exportfits writes it as FK4 at equinox 1979.9.
    "B1950_VLA": ("RA", "DEC", "FK4", 1979.9),
    "GALACTIC": ("GLON", "GLAT", "", None),
    "ECLIPTIC": ("ELON", "ELAT", "", None),
    "SUPERGAL": ("SLON", "SLAT", "", None),
}
_CASA_UNDEFINED_FRAME = "Undefined"
"""CASA's spectral frame of tclean's ``specmode='cubedata'`` images (no FITS SPECSYS)."""
_CASA_FRAME_FROM_SPECSYS = {fits_name: casa_name for casa_name, fits_name in FITS_SPECSYS_FROM_CASA.items()}
# CASA's quote signs for arcmin and arcsec, which astropy.units does not parse.
_CASA_ANGLE_UNIT_ALIASES = {"'": "arcmin", '"': "arcsec"}
_CASA_TIME_SYSTEMS = ("UTC", "TAI", "TT", "TDB", "TCG", "TCB")
# Provenance goes into a table keyword of the CASA image, as JSON, not into its miscinfo:
# casatools keeps miscinfo ints as 32-bit (silently wrapping others, dropping numpy ints), and
# exportfits fails on the whole image when a miscinfo key is not a legal FITS keyword (e.g.
# LSST.BUTLER.ID). CASA tools ignore table keywords they do not know.
_PROVENANCE_KEYWORD = "radio_clean_provenance"
# Keys importfits copies from FITS bookkeeping cards into miscinfo; they are not provenance.
_FITS_BOOKKEEPING_KEYS = frozenset({"casambm", "rclayout", "checksum", "datasum"})


def _angle_in_deg(values: Any, unit: str) -> np.ndarray:
    # astropy's factors are the exact ones (1/3600, 180/pi as numpy's degrees uses): same bits.
    try:
        angle_unit = units.Unit(_CASA_ANGLE_UNIT_ALIASES.get(unit, unit))
        return (np.asarray(values, dtype=float) * angle_unit).to_value(units.deg)
    except (ValueError, units.UnitsError):
        raise CasaError(f"CASA angle unit {unit!r} is not an angle radio_clean can convert.") from None


def _frequency_in_hz(unit: str) -> float:
    try:
        return units.Unit(unit).to(units.Hz)
    except (ValueError, units.UnitsError):
        raise CasaError(f"The CASA spectral axis is in {unit!r}, not a unit of frequency.") from None


def _quantity_in(quantity: dict, unit: str) -> float:
    if quantity["unit"] == unit:
        return float(quantity["value"])
    quanta = casatools.quanta()
    try:
        return float(quanta.convert(quantity, unit)["value"])
    finally:
        quanta.done()


def _beam_record(beam: Beam) -> dict:
    return {
        "major": {"unit": "arcsec", "value": float(beam.major_arcsec)},
        "minor": {"unit": "arcsec", "value": float(beam.minor_arcsec)},
        "positionangle": {"unit": "deg", "value": float(beam.pa_deg)},
    }


def _beam_from_record(record: dict) -> Beam:
    return Beam(
        _quantity_in(record["major"], "arcsec"),
        _quantity_in(record["minor"], "arcsec"),
        _quantity_in(record["positionangle"], "deg"),
    )


def _casa_coordinate_record(image: RadioImage, telescope: str = "") -> dict:
    """Translate the image's WCS into a casatools coordinate-system record (RA, DEC, Stokes, Freq)."""
    wcs = image.wcs.wcs
    lon_ctype, lat_ctype = wcs.ctype[0], wcs.ctype[1]
    lon_prefix, projection = lon_ctype.split("-")[0], lon_ctype[5:]
    direction_system = None
    for casa_name, (lon, lat, radesys, equinox) in _CASA_DIRECTION_SYSTEMS.items():
        same_equinox = equinox is None or math.isclose(float(wcs.equinox), equinox)
        if lon == lon_prefix and lat == lat_ctype.split("-")[0] and radesys == wcs.radesys and same_equinox:
            direction_system = casa_name
            break
    if direction_system is None:
        raise CasaError(
            f"The celestial axes {lon_ctype}/{lat_ctype} with RADESYS={wcs.radesys!r} EQUINOX={wcs.equinox} "
            "have no CASA direction reference (use ICRS, FK5 J2000, FK4 B1950 or galactic coordinates)."
        )
    projection_parameters = {m: value for axis, m, value in wcs.get_pv() if axis == 2}
    if any(axis != 2 for axis, _, _ in wcs.get_pv()):
        raise CasaError(
            "Only PV2_m projection parameters (on the latitude axis) can be given to CASA; "
            f"this WCS has {wcs.get_pv()}."
        )
    cdelt, pc = wcs.get_cdelt(), wcs.get_pc()
    if wcs.cunit[2] != "Hz":
        raise CasaError(f"The frequency axis is in {wcs.cunit[2]!r}; CASA images need it in Hz.")

    coordsys = casatools.coordsys()
    template = coordsys.newcoordsys(direction=True, spectral=True, stokes=list(image.stokes))
    try:
        if projection != "SIN":
            template.setprojection(projection)
        record = template.torecord()
    finally:
        template.done()
        coordsys.done()
    if projection_parameters:
        first = 0 if projection == "ZPN" else 1
        n_parameters = max(len(record["direction0"]["projection_parameters"]), max(projection_parameters))
        record["direction0"]["projection_parameters"] = np.array(
            [projection_parameters.get(m, 0.0) for m in range(first, first + n_parameters)]
        )
    equatorial = lon_prefix == "RA"
    record["direction0"].update(
        axes=np.array(["Right Ascension", "Declination"] if equatorial else ["Longitude", "Latitude"]),
        system=direction_system,
        conversionSystem=direction_system,
        # Radians, as CASA's imagers write them: the synthesis tools refuse to reuse an image
        # whose direction axis units differ from the ones they would make.
        units=np.array(["rad", "rad"]),
        crval=np.deg2rad(np.array(wcs.crval[:2], dtype=float)),
        cdelt=np.deg2rad(np.array(cdelt[:2], dtype=float)),
        crpix=np.array(wcs.crpix[:2], dtype=float) - 1.0,
        # casatools shows a direction coordinate's PC matrix transposed: record pc[i][j] = PCj_i.
        pc=np.array(pc[:2, :2], dtype=float).T,
        longpole=float(wcs.lonpole),
        latpole=float(wcs.latpole),
    )
    frame = _CASA_FRAME_FROM_SPECSYS.get(wcs.specsys, _CASA_UNDEFINED_FRAME)
    spectral = record["spectral2"]
    spectral.update(system=frame, unit="Hz", restfreq=float(wcs.restfrq), restfreqs=np.array([wcs.restfrq]))
    spectral["conversion"]["system"] = frame
    spectral["wcs"] = {
        "crval": float(wcs.crval[2]),
        "cdelt": float(cdelt[2]),
        "crpix": float(wcs.crpix[2]) - 1.0,
        "pc": float(pc[2, 2]),
        "ctype": "FREQ",
    }
    if math.isfinite(wcs.mjdobs):
        time_system = wcs.timesys.strip().upper() or "UTC"
        if time_system not in _CASA_TIME_SYSTEMS:
            raise CasaError(f"TIMESYS {wcs.timesys!r} has no CASA epoch reference; use UTC.")
        record["obsdate"] = {"type": "epoch", "refer": time_system, "m0": {"unit": "d", "value": wcs.mjdobs}}
    else:
        del record["obsdate"]
    x, y, z = (float(value) for value in wcs.obsgeo[:3])
    if all(math.isfinite(value) for value in (x, y, z)):
        record["telescopeposition"] = {
            "type": "position",
            "refer": "ITRF",
            "m0": {"unit": "rad", "value": math.atan2(y, x)},
            "m1": {"unit": "rad", "value": math.atan2(z, math.hypot(x, y))},
            "m2": {"unit": "m", "value": math.sqrt(x * x + y * y + z * z)},
        }
    else:
        del record["telescopeposition"]
    record["telescope"] = telescope
    record["observer"] = ""
    return record


def _provenance_from_miscinfo(miscinfo: dict) -> dict:
    provenance: dict[str, Any] = {}
    for key, value in miscinfo.items():
        if key.lower() in _FITS_BOOKKEEPING_KEYS:
            continue
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, str | int | float | bool):
            provenance[key] = value
        else:
            _logger.debug("Skipping miscinfo entry %r of type %s", key, type(value).__name__)
    return provenance


def write_casa_image(image: RadioImage, path: str, *, overwrite: bool = False, telescope: str = "") -> str:
    """Write a `RadioImage` as a CASA image (a casacore paged image directory).

    Parameters
    ----------
    image : `RadioImage`
        The image to write.
    path : `str`
        Directory of the CASA image to create.
    overwrite : `bool`, optional
        Whether an existing image at ``path`` may be replaced.
    telescope : `str`, optional
        Telescope name of the image's coordinate system (tclean's images have
        the MS's; see Notes).

    Returns
    -------
    path : `str`
        Absolute path of the CASA image.

    Raises
    ------
    CasaError
        If ``path`` exists and ``overwrite`` is false, the WCS has no CASA
        equivalent, or casatools fails.

    Notes
    -----
    CASA's axis order is RA, DEC, Stokes, Freq (as tclean writes); pixels are
    reordered accordingly and stored as float32 without a mask (NaN pixels
    stay NaN). Beams go into the image info (per-plane beams included).
    Provenance is stored as JSON in the image table keyword
    ``radio_clean_provenance``, not in the miscinfo: casatools would wrap
    ints beyond 32 bits there, and ``exportfits`` fails on miscinfo keys that
    are not FITS keywords (such as the Butler's ``LSST.BUTLER.ID``). The
    observatory position (``OBSGEO``)
    and observation date (``MJD-OBS``) become the coordinate system's
    telescope position and epoch; the telescope name is ``telescope``
    (casacore finds the observatory by name, not by position, to convert the
    spectral frame, as CASA's cube major cycles do for frames other than the
    image's own).
    """
    path = os.path.abspath(path)
    if os.path.exists(path):
        if not overwrite:
            raise CasaError(f"{path} already exists; pass overwrite=True to replace it.")
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    coordinates = _casa_coordinate_record(image, telescope)
    image_info: dict[str, Any] = {"imagetype": "Intensity", "objectname": ""}
    beam = image.restoring_beam
    if isinstance(beam, Beam):
        image_info["restoringbeam"] = _beam_record(beam)
    elif isinstance(beam, PlaneBeams):
        # CASA numbers planes channel-fastest: plane = chan + n_chan * stokes.
        plane_beams: dict[str, Any] = {"nChannels": beam.n_chan, "nStokes": beam.n_stokes}
        for stokes in range(beam.n_stokes):
            for chan in range(beam.n_chan):
                plane_beams[f"*{chan + beam.n_chan * stokes}"] = _beam_record(beam[chan, stokes])
        image_info["perplanebeams"] = plane_beams
    n_stokes, n_chan, ny, nx = image.shape
    record = {
        # (stokes, chan, y, x) in numpy -> CASA's (x, y, stokes, chan).
        "imagearray": image.pixels.transpose(3, 2, 0, 1),
        "shape": np.array([nx, ny, n_stokes, n_chan]),
        # ImageInterface records nest the coordinate system one level down; a flat one
        # makes casatools 6.7.5 segfault.
        "coordsys": {"coordsys": coordinates},
        "imageinfo": image_info,
    }
    tool = casatools.image()
    try:
        with casa_log_forwarded():
            if not tool.fromrecord(record, path):
                raise CasaError(f"casatools could not create the CASA image {path}.")
            tool.setbrightnessunit(image.brightness_unit)
            tool.close()
            if image.provenance:
                _write_provenance_keyword(path, image.provenance)
    except CasaError:
        raise
    except Exception as err:
        raise CasaError(f"casatools could not write the CASA image {path}: {err}") from err
    finally:
        tool.close()
        tool.done()
    return path


def _write_provenance_keyword(path: str, provenance: dict) -> None:
    table = casatools.table()
    try:
        table.open(path, nomodify=False)
        table.putkeyword(_PROVENANCE_KEYWORD, json.dumps(provenance, ensure_ascii=True))
    finally:
        table.close()


def _read_provenance_keyword(path: str) -> dict:
    table = casatools.table()
    try:
        table.open(path, nomodify=True)
        if _PROVENANCE_KEYWORD not in table.keywordnames():
            return {}
        return json.loads(table.getkeyword(_PROVENANCE_KEYWORD))
    finally:
        table.close()


def _wcs_from_casa_record(record: dict, stokes_names: list[str]) -> WCS:
    """Translate a casatools coordinate-system record (direction, spectral, Stokes) into a WCS."""
    direction = record["direction"]
    spectral = record["spectral"]
    system = direction["system"]
    if system not in _CASA_DIRECTION_SYSTEMS:
        raise CasaError(
            f"The CASA direction reference {system} has no FITS equivalent here "
            f"(radio_clean reads {', '.join(_CASA_DIRECTION_SYSTEMS)})."
        )
    lon, lat, radesys, equinox = _CASA_DIRECTION_SYSTEMS[system]
    projection = direction["projection"]
    units = [str(unit) for unit in direction["units"]]
    crval_deg = [float(_angle_in_deg(value, unit)) for value, unit in zip(direction["crval"], units)]
    cdelt_deg = [float(_angle_in_deg(value, unit)) for value, unit in zip(direction["cdelt"], units)]

    if "tabular" in spectral:
        raise CasaError("The CASA image has a tabular (non-linear) frequency axis; FITS needs a linear one.")
    if spectral["wcs"]["ctype"] != "FREQ":
        raise CasaError(f"The CASA spectral axis is {spectral['wcs']['ctype']}, not FREQ.")
    to_hz = _frequency_in_hz(spectral.get("unit", "Hz"))
    frame = spectral["system"]
    if frame not in FITS_SPECSYS_FROM_CASA and frame != _CASA_UNDEFINED_FRAME:
        raise CasaError(
            f"The CASA image's spectral frame is {frame!r}, which radio_clean does not read "
            f"(it reads {', '.join(FITS_SPECSYS_FROM_CASA)} and {_CASA_UNDEFINED_FRAME})."
        )

    codes = [STOKES_CODES[name] for name in stokes_names]
    stokes_step = codes[1] - codes[0] if len(codes) > 1 else 1
    if stokes_step == 0 or any(b - a != stokes_step for a, b in zip(codes, codes[1:])):
        raise CasaError(
            f"The Stokes planes {stokes_names} are not evenly spaced on the FITS STOKES axis "
            "(e.g. I, Q, U, V or I, V are; I, Q, V is not)."
        )

    wcs = WCS(naxis=4)
    wcs.wcs.ctype = [f"{lon:-<5}{projection}", f"{lat:-<5}{projection}", "FREQ", "STOKES"]
    wcs.wcs.cunit = ["deg", "deg", "Hz", ""]
    wcs.wcs.crval = [crval_deg[0], crval_deg[1], spectral["wcs"]["crval"] * to_hz, codes[0]]
    wcs.wcs.cdelt = [cdelt_deg[0], cdelt_deg[1], spectral["wcs"]["cdelt"] * to_hz, stokes_step]
    wcs.wcs.crpix = [
        direction["crpix"][0] + 1.0,
        direction["crpix"][1] + 1.0,
        spectral["wcs"]["crpix"] + 1.0,
        1.0,
    ]
    pc = np.identity(4)
    pc[:2, :2] = np.asarray(direction["pc"]).T  # casatools shows PC transposed, see above
    pc[2, 2] = spectral["wcs"]["pc"]
    wcs.wcs.pc = pc
    wcs.wcs.lonpole = direction["longpole"]
    wcs.wcs.latpole = direction["latpole"]
    parameters = [float(value) for value in direction["projection_parameters"]]
    if any(value != 0.0 for value in parameters):
        first = 0 if projection == "ZPN" else 1
        wcs.wcs.set_pv([(2, first + index, value) for index, value in enumerate(parameters)])
    if radesys:
        wcs.wcs.radesys = radesys
    if equinox is not None:
        wcs.wcs.equinox = equinox
    wcs.wcs.specsys = FITS_SPECSYS_FROM_CASA.get(frame, "")
    if spectral.get("restfreq", 0.0) > 0:
        wcs.wcs.restfrq = spectral["restfreq"] * to_hz
    epoch = record.get("obsdate")
    if epoch and epoch["refer"] in _CASA_TIME_SYSTEMS and epoch["m0"]["value"] > 0:
        wcs.wcs.mjdobs = _quantity_in(epoch["m0"], "d")
        if epoch["refer"] != "UTC":
            wcs.wcs.timesys = epoch["refer"]
    position = record.get("telescopeposition")
    if position:
        if position["refer"] != "ITRF":
            measures = casatools.measures()
            try:
                position = measures.measure(position, "ITRF")
            finally:
                measures.done()
        longitude = _quantity_in(position["m0"], "rad")
        latitude = _quantity_in(position["m1"], "rad")
        radius = _quantity_in(position["m2"], "m")
        wcs.wcs.obsgeo[:3] = [
            radius * math.cos(latitude) * math.cos(longitude),
            radius * math.cos(latitude) * math.sin(longitude),
            radius * math.sin(latitude),
        ]
    wcs.wcs.set()
    return wcs


def _split_coordinates(record: dict, path: str) -> dict[str, Any]:
    """Find the direction, spectral and Stokes coordinates of a record, their pixel axes, date and site."""
    found: dict[str, Any] = {}
    for key in record:
        match = re.fullmatch(r"(direction|spectral|stokes|linear|tabular)(\d+)", key)
        if match is None:
            continue
        kind, index = match.groups()
        if kind in found or kind in ("linear", "tabular"):
            raise CasaError(
                f"{path} has a {kind} coordinate radio_clean cannot represent; it reads images with one "
                "direction, one spectral and one Stokes coordinate."
            )
        found[kind] = record[key]
        found[f"{kind}_axes"] = [int(axis) for axis in record[f"pixelmap{index}"]]
    for key in ("obsdate", "telescopeposition"):
        if key in record:
            found[key] = record[key]
    missing = [kind for kind in ("direction", "spectral", "stokes") if kind not in found]
    if missing:
        raise CasaError(
            f"{path} has no {' or '.join(missing)} axis; add degenerate axes first "
            "(e.g. casatools image.adddegaxes(spectral=True, stokes='I'))."
        )
    return found


def read_casa_image(path: str) -> RadioImage:
    """Read a CASA image (e.g. a tclean product) into a `RadioImage`.

    Parameters
    ----------
    path : `str`
        Directory of the CASA image.

    Returns
    -------
    image : `RadioImage`
        Pixels (float32), coordinates (celestial system and projection,
        spectral frame, rest frequency, observation date, observatory
        position), brightness unit, single or per-plane restoring beams, and
        as provenance the image's miscinfo entries of type str/int/float/bool
        (tclean records some there) updated with what `write_casa_image`
        stored.

    Raises
    ------
    CasaError
        If ``path`` is not a CASA image, or the image lacks a direction,
        spectral or Stokes axis, or has coordinates FITS cannot express
        (tabular frequencies, unevenly spaced Stokes planes).

    Notes
    -----
    The pixel mask is not read: masked pixels keep the values stored under
    the mask (tclean's ``.image.pbcor`` stores NaN there, but other images
    may hold finite values). Use ``image.replacemaskedpixels`` in casatools
    first if that matters. Per-plane beams are rounded to float32 (the
    precision of CASA's FITS ``BEAMS`` table). Axes may be in any order in
    the CASA image (tclean's RA, DEC, Stokes, Freq or importfits's RA, DEC,
    Freq, Stokes).
    """
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise CasaError(f"{path} is not a CASA image (a CASA image is a directory).")
    tool = casatools.image()
    try:
        with casa_log_forwarded():
            try:
                tool.open(path)
            except Exception as err:
                raise CasaError(f"{path} could not be opened as a CASA image: {err}") from err
            if tool.pixeltype() not in ("float", "double"):
                raise CasaError(f"{path} has {tool.pixeltype()} pixels; radio_clean reads only real ones.")
            coordsys = tool.coordsys()
            try:
                coordinates = _split_coordinates(coordsys.torecord(), path)
            finally:
                coordsys.done()
            x_axis, y_axis = coordinates["direction_axes"]
            (stokes_axis,) = coordinates["stokes_axes"]
            (spectral_axis,) = coordinates["spectral_axes"]
            pixels = np.asarray(tool.getchunk(), dtype=np.float32).transpose(
                stokes_axis, spectral_axis, y_axis, x_axis
            )
            brightness_unit = tool.brightnessunit()
            beam_record = tool.restoringbeam()
            miscinfo = tool.miscinfo()
            tool.close()
            provenance = _provenance_from_miscinfo(miscinfo)
            provenance.update(_read_provenance_keyword(path))
    except CasaError:
        raise
    except Exception as err:
        raise CasaError(f"casatools could not read the CASA image {path}: {err}") from err
    finally:
        tool.close()
        tool.done()
    stokes_names = [str(name) for name in coordinates["stokes"]["stokes"]]
    wcs = _wcs_from_casa_record(coordinates, stokes_names)
    n_stokes, n_chan = pixels.shape[:2]
    beam: Beam | PlaneBeams | None = None
    if "beams" in beam_record:
        planes = beam_record["beams"]
        beam = PlaneBeams.from_beams(
            [[_beam_from_record(planes[f"*{chan}"][f"*{stokes}"]) for stokes in range(n_stokes)]
             for chan in range(n_chan)]
        )  # fmt: skip
    elif "major" in beam_record:
        beam = _beam_from_record(beam_record)
    return RadioImage(
        np.ascontiguousarray(pixels),
        wcs,
        brightness_unit=brightness_unit,
        restoring_beam=beam,
        provenance=provenance,
    )


def common_beam(image: RadioImage) -> Beam:
    """Return CASA's common beam of an image with per-plane beams (the smallest enclosing all).

    Parameters
    ----------
    image : `RadioImage`
        Image whose ``restoring_beam`` is a `PlaneBeams` (a single `Beam` is
        returned as it is).
    """
    if isinstance(image.restoring_beam, Beam) or image.restoring_beam is None:
        return image.restoring_beam
    directory = tempfile.mkdtemp(prefix="radio_clean-beam-")
    tool = casatools.image()
    try:
        with casa_log_forwarded():
            # Only the beams matter: a one-pixel plane per channel keeps the scratch image small.
            path = write_casa_image(
                image.replace(pixels=image.pixels[:, :, :1, :1]), os.path.join(directory, "b.im")
            )
            tool.open(path)
            record = tool.commonbeam()
    finally:
        tool.close()
        shutil.rmtree(directory, ignore_errors=True)
    # commonbeam() names the angle "pa", restoringbeam() "positionangle".
    return _beam_from_record({"positionangle": record.get("pa"), **record})
