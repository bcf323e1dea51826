"""Reading MeasurementSet metadata with casatools (read-only)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re

from ._log import CasaError, casa_log_forwarded
from ._setup import casatools

__all__ = [
    "FieldInfo",
    "MsInfo",
    "SpectralWindowInfo",
    "band_spw_selection",
    "continuum_band_holds",
    "continuum_band_name",
    "continuum_band_span",
    "field_names_and_channels",
    "is_measurement_set",
    "read_ms_info",
    "selected_ids",
    "spectral_windows_of_band",
    "telescope_name",
    "unflagged_rows",
]


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    """One named field of a MeasurementSet (possibly several pointings)."""

    name: str
    field_ids: tuple[int, ...]
    ra_deg: float
    """ICRS/J2000 right ascension of the first pointing, degrees."""
    dec_deg: float
    """ICRS/J2000 declination of the first pointing, degrees."""


@dataclasses.dataclass(frozen=True)
class SpectralWindowInfo:
    """One spectral window of a MeasurementSet."""

    spw_id: int
    n_chan: int
    freq_min: float
    freq_max: float
    chan_width: float
    freq_frame: str

    @property
    def band_name(self) -> str:
        """Name of the band this window's set-up defines, e.g. ``8085MHz-1ch``."""
        return f"{_mhz(0.5 * (self.freq_min + self.freq_max))}MHz-{self.n_chan}ch"


def _mhz(frequency_hz: float) -> str:
    return f"{frequency_hz / 1e6:.4f}".rstrip("0").rstrip(".")


_CONTINUUM_BAND = re.compile(r"(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)MHz")
_CONTINUUM_BAND_ROUNDING_HZ = 100.0
"""Frequencies in band names are rounded to 0.1 kHz."""


def continuum_band_name(freq_min: float, freq_max: float) -> str:
    """Name of the band of the spectral windows from ``freq_min`` to ``freq_max`` (Hz): ``1400-1848MHz``.

    Such a band (made for tclean's ``specmode='mfs'`` over several
    set-ups) holds, in each MS, the windows whose channels all lie in that range.
    """
    return f"{_mhz(freq_min)}-{_mhz(freq_max)}MHz"


def continuum_band_span(band: str) -> tuple[float, float] | None:
    """``(freq_min, freq_max)`` in Hz of a band named by `continuum_band_name`; `None` for a set-up's band."""
    match = _CONTINUUM_BAND.fullmatch(band)
    return (float(match[1]) * 1e6, float(match[2]) * 1e6) if match else None


def continuum_band_holds(band: str, freq_min: float, freq_max: float) -> bool:
    """Whether continuum band ``band`` holds a window with channels from ``freq_min`` to ``freq_max`` Hz."""
    low, high = continuum_band_span(band)
    return low - _CONTINUUM_BAND_ROUNDING_HZ <= freq_min and freq_max <= high + _CONTINUUM_BAND_ROUNDING_HZ


@dataclasses.dataclass(frozen=True)
class MsInfo:
    """What radio_clean records about a MeasurementSet when ingesting it."""

    path: str
    telescope: str
    observer: str
    project: str
    n_rows: int
    time_start_mjd: float
    """Start of the first integration, MJD (UTC)."""
    time_end_mjd: float
    """End of the last integration, MJD (UTC)."""
    fields: tuple[FieldInfo, ...]
    spectral_windows: tuple[SpectralWindowInfo, ...]
    data_columns: tuple[str, ...]
    content_digest: str = ""
    """SHA-256 of the MS's files (`radio_clean.ms_identity.ms_content_digest`); empty if not computed."""

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the metadata and the content digest: equal for the same data, wherever it lives."""
        identity = dataclasses.asdict(self)
        del identity["path"]
        return hashlib.sha256(repr(sorted(identity.items())).encode()).hexdigest()


def is_measurement_set(path: str) -> bool:
    """Return whether ``path`` is a MeasurementSet (opened read-only to look)."""
    # A casacore table is a directory with table.dat; an MS says so in its table info.
    if not os.path.isfile(os.path.join(path, "table.dat")):
        return False
    table = casatools.table()
    try:
        with casa_log_forwarded():
            table.open(path, nomodify=True)
            return table.info().get("type") == "Measurement Set"
    except Exception:
        return False
    finally:
        table.close()


def _direction_to_j2000(direction: dict) -> tuple[float, float]:
    measures = casatools.measures()
    quanta = casatools.quanta()
    if direction["refer"] not in ("J2000", "ICRS"):
        direction = measures.measure(direction, "J2000")
    ra = quanta.convert(direction["m0"], "deg")["value"] % 360.0
    dec = quanta.convert(direction["m1"], "deg")["value"]
    measures.done()
    return ra, dec


def _mjd_utc(seconds: float, reference: str) -> float:
    """Convert an MS TIME value (MJD seconds in ``reference``) to MJD UTC."""
    measures = casatools.measures()
    epoch = measures.epoch(reference, f"{seconds}s")
    if reference.upper() != "UTC":
        epoch = measures.measure(epoch, "UTC")
    measures.done()
    return epoch["m0"]["value"]


_FRAME_NAMES = ("REST", "LSRK", "LSRD", "BARY", "GEO", "TOPO", "GALACTO", "LGROUP", "CMB")


def _spectral_windows(metadata, frame_codes) -> tuple[SpectralWindowInfo, ...]:
    spws = []
    for spw_id in range(metadata.nspw()):
        freqs = metadata.chanfreqs(spw_id)
        code = int(frame_codes[spw_id])
        spws.append(
            SpectralWindowInfo(
                spw_id=spw_id,
                n_chan=len(freqs),
                freq_min=float(min(freqs)),
                freq_max=float(max(freqs)),
                chan_width=float(metadata.chanwidths(spw_id)[0]),
                freq_frame=_FRAME_NAMES[code] if code < len(_FRAME_NAMES) else str(code),
            )
        )
    return tuple(spws)


def spectral_windows_of_band(path: str, band: str) -> list[int]:
    """Return the ids of the spectral windows of ``path`` whose set-up is the band ``band``.

    Every quantum of a chain asks this of its MSs; the answer is kept per
    process for as long as the MS's SPECTRAL_WINDOW table is unchanged.
    """
    try:
        stat = os.stat(os.path.join(path, "SPECTRAL_WINDOW", "table.dat"))
    except OSError:
        return _spectral_windows_of_band(path, band)
    key = (os.path.realpath(path), band, stat.st_mtime_ns, stat.st_size, stat.st_ino)
    if key not in _BAND_SPWS:
        _BAND_SPWS[key] = _spectral_windows_of_band(path, band)
    return list(_BAND_SPWS[key])


_BAND_SPWS: dict[tuple, list[int]] = {}


def _spectral_windows_of_band(path: str, band: str) -> list[int]:
    table = casatools.table()
    metadata = casatools.msmetadata()
    with casa_log_forwarded():
        table.open(os.path.join(path, "SPECTRAL_WINDOW"), nomodify=True)
        frame_codes = table.getcol("MEAS_FREQ_REF")
        table.close()
        metadata.open(path)
        try:
            spws = _spectral_windows(metadata, frame_codes)
        finally:
            metadata.close()
    if continuum_band_span(band) is None:
        ids = [spw.spw_id for spw in spws if spw.band_name == band]
    else:
        ids = [spw.spw_id for spw in spws if continuum_band_holds(band, spw.freq_min, spw.freq_max)]
    if not ids:
        raise CasaError(f"{path} has no spectral window of band {band}.")
    return ids


def read_ms_info(path: str) -> MsInfo:
    """Read the metadata radio_clean needs from a MeasurementSet, read-only.

    Parameters
    ----------
    path : `str`
        Path of the MeasurementSet directory.

    Returns
    -------
    info : `MsInfo`
        Telescope, fields, spectral windows, time range and columns.

    Raises
    ------
    CasaError
        If ``path`` is not a readable, non-empty MeasurementSet; the message
        says which of these it is.
    """
    path = os.path.abspath(path)
    if not os.path.exists(path):
        raise CasaError(f"{path} does not exist; give the path of a MeasurementSet directory.")
    if not os.path.isdir(path):
        raise CasaError(
            f"{path} is a file, not a MeasurementSet (an MS is a directory); "
            "convert UVFITS or other formats to an MS first (CASA's importuvfits)."
        )
    if not is_measurement_set(path):
        raise CasaError(
            f"{path} is a directory but not a MeasurementSet (no casacore MS table in it); "
            "give the top-level .ms directory."
        )
    table = casatools.table()
    metadata = casatools.msmetadata()
    try:
        with casa_log_forwarded():
            table.open(path, nomodify=True)
            n_rows = table.nrows()
            if n_rows == 0:
                raise CasaError(f"{path} is an empty MeasurementSet (no visibility rows); nothing to image.")
            columns = tuple(c for c in ("DATA", "CORRECTED_DATA", "MODEL_DATA") if c in table.colnames())
            times = table.getcol("TIME")
            intervals = table.getcol("INTERVAL")
            time_ref = table.getcolkeyword("TIME", "MEASINFO").get("Ref", "UTC")
            table.close()

            table.open(os.path.join(path, "OBSERVATION"), nomodify=True)
            telescopes = sorted(set(table.getcol("TELESCOPE_NAME")))
            observer = ",".join(sorted({str(name) for name in table.getcol("OBSERVER")}))
            project = ",".join(sorted({str(name) for name in table.getcol("PROJECT")}))
            table.close()

            table.open(os.path.join(path, "SPECTRAL_WINDOW"), nomodify=True)
            frame_codes = table.getcol("MEAS_FREQ_REF")
            table.close()

            metadata.open(path)
            fields_by_name: dict[str, list[int]] = {}
            for field_id, name in enumerate(metadata.fieldnames()):
                fields_by_name.setdefault(str(name) or f"FIELD{field_id}", []).append(field_id)
            fields = []
            for name, field_ids in fields_by_name.items():
                ra, dec = _direction_to_j2000(metadata.phasecenter(field_ids[0]))
                fields.append(FieldInfo(name=name, field_ids=tuple(field_ids), ra_deg=ra, dec_deg=dec))
            spws = _spectral_windows(metadata, frame_codes)
    except CasaError:
        raise
    except Exception as err:
        raise CasaError(f"{path} could not be read as a MeasurementSet: {err}") from err
    finally:
        table.close()
        metadata.close()
    if len(telescopes) != 1 or not telescopes[0]:
        raise CasaError(
            f"{path} names {len(telescopes)} telescopes ({', '.join(telescopes) or 'none'}) in its "
            "OBSERVATION table; radio_clean needs exactly one per MS (split the MS by telescope)."
        )
    start = float((times - intervals / 2).min())
    end = float((times + intervals / 2).max())
    return MsInfo(
        path=path,
        telescope=str(telescopes[0]),
        observer=observer,
        project=project,
        n_rows=int(n_rows),
        time_start_mjd=_mjd_utc(start, time_ref),
        time_end_mjd=_mjd_utc(end, time_ref),
        fields=tuple(fields),
        spectral_windows=tuple(spws),
        data_columns=columns,
    )


def unflagged_rows(
    path: str, selection: dict[str, str], *, enough: int = 1, rows_per_read: int = 10_000
) -> int:
    """Count the selected rows of an MS that have unflagged data, read-only, stopping at ``enough``.

    Parameters
    ----------
    path : `str`
        MeasurementSet.
    selection : `dict` [`str`, `str`]
        A casatools ``ms.msselect`` record (``field``, ``spw`` with
        channels, ``time``, ``uvdist``, ``baseline``, ``scan``,
        ``scanintent``); empty values select everything.
    enough : `int`, optional
        Stop counting after this many rows: only the flags of the first rows
        are read when data are there, all selected flags when none are.
    rows_per_read : `int`, optional
        Rows whose flags are read at a time.

    Returns
    -------
    count : `int`
        Rows (up to ``enough``) with ``FLAG_ROW`` false and at least one
        selected, unflagged visibility; 0 if the selection matches no row.
    """
    selection = {key: value for key, value in selection.items() if value}
    ms = casatools.ms()
    count = 0
    try:
        with casa_log_forwarded():
            ms.open(path, nomodify=True)
            if selection and not ms.msselect(selection):
                return 0
            ms.iterinit(maxrows=rows_per_read, adddefaultsortcolumns=False)
            more = ms.iterorigin()
            while more and count < enough:
                data = ms.getdata(["flag", "flag_row"])
                flags = data["flag"].reshape(-1, data["flag"].shape[-1])
                count += int(((~flags).any(axis=0) & ~data["flag_row"]).sum())
                more = ms.iternext()
            ms.iterend()
    except Exception as err:
        # msselect raises on expressions that match nothing in this MS (a field it does not have).
        if "No match" in str(err) or "NullSelection" in str(err) or "zero rows" in str(err):
            return 0
        raise CasaError(f"{path} could not be read to check the selection {selection}: {err}") from err
    finally:
        ms.close()
    return count


def field_names_and_channels(path: str) -> tuple[list[str], list[int]]:
    """Field names and the channel count of each spectral window of an MS (read-only)."""
    table = casatools.table()
    try:
        with casa_log_forwarded():
            table.open(os.path.join(path, "FIELD"), nomodify=True)
            names = [str(name) for name in table.getcol("NAME")]
            table.close()
            table.open(os.path.join(path, "SPECTRAL_WINDOW"), nomodify=True)
            channels = [int(n) for n in table.getcol("NUM_CHAN")]
    except Exception as err:
        raise CasaError(f"{path} could not be read as a MeasurementSet: {err}") from err
    finally:
        table.close()
    return names, channels


def selected_ids(path: str, **selection: str) -> dict[str, list]:
    """Return the ids CASA's data selection picks in ``path`` (``ms.msseltoindex``, read-only).

    Parameters
    ----------
    path : `str`
        MeasurementSet.
    **selection : `str`
        ``msseltoindex`` selections: ``field``, ``spw``, ``time``,
        ``baseline``, ``scan``, ``uvrange``, ``observation``.

    Returns
    -------
    ids : `dict` [`str`, `list`]
        ``field``, ``spw``, ``channel`` (rows of spw, first, last, step)...

    Raises
    ------
    CasaError
        With CASA's message, if the selection does not parse or matches
        nothing that CASA checks (an unknown field, window or antenna).
    """
    ms = casatools.ms()
    try:
        with casa_log_forwarded():
            indices = ms.msseltoindex(vis=path, **selection)
    except RuntimeError as err:
        raise CasaError(" ".join(str(err).split())) from None
    finally:
        ms.done()
    return {key: value.tolist() if hasattr(value, "tolist") else value for key, value in indices.items()}


def band_spw_selection(path: str, band_spw_ids: list[int], spw: str) -> str:
    """Return the CASA ``spw`` selection of the windows of one band that tclean's ``spw`` selects.

    Parameters
    ----------
    path : `str`
        MeasurementSet.
    band_spw_ids : `list` [`int`]
        Its spectral windows of the band being imaged.
    spw : `str`
        tclean's ``spw`` for all bands: ``0:10~50``, ``*:5~20``,
        ``1.4~1.42GHz``...; an entry with no window (``:10~50``) applies to
        every window of the band.

    Returns
    -------
    selection : `str`
        The selection to give CASA for this band: ``spw`` itself when it
        selects windows of this band only, else the channels it selects
        in them; empty when it selects none.
    """
    windows = ",".join(map(str, band_spw_ids))
    if not spw.strip():
        return windows
    items = [item.strip() for item in spw.split(",")]
    # ':10~50' (channels of whichever window is imaged) is radio_clean's, not CASA's.
    expanded = ",".join(
        ",".join(f"{window}{item}" for window in band_spw_ids) if item.startswith(":") else item
        for item in items
    )
    rows = selected_ids(path, spw=expanded)["channel"]
    if not rows:
        return ""
    if {row[0] for row in rows} <= set(band_spw_ids):
        return expanded
    ranges: dict[int, list[str]] = {}
    for window, first, last, step in rows:
        if window in band_spw_ids:
            ranges.setdefault(window, []).append(f"{first}~{last}" + (f"^{step}" if step != 1 else ""))
    return ",".join(f"{window}:{';'.join(channels)}" for window, channels in sorted(ranges.items()))


def telescope_name(path: str) -> str:
    """Telescope of an MS's first observation, as CASA's imager names it in the images it makes."""
    table = casatools.table()
    try:
        with casa_log_forwarded():
            table.open(os.path.join(path, "OBSERVATION"), nomodify=True)
            names = table.getcol("TELESCOPE_NAME") if table.nrows() else []
    except RuntimeError as err:
        raise CasaError(f"{path} could not be read for its telescope name: {err}") from err
    finally:
        table.close()
    return str(names[0]) if len(names) else ""
