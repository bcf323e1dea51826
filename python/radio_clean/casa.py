"""The bridge to casatools: set-up, CASA's log, and reading MeasurementSets.

Every call into casatools goes through this module (or, for imaging, through
tools created here) so that the offline site configuration is in force and
CASA's log ends up in Python logging.
"""

from __future__ import annotations

__all__ = [
    "CasaError",
    "FieldInfo",
    "MsInfo",
    "SpectralWindowInfo",
    "forward_casa_log",
    "read_ms_info",
]

import atexit
import contextlib
import dataclasses
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator

from ._environment import configure_casa_environment

configure_casa_environment()

import casatools  # noqa: E402

_casa_log = logging.getLogger("radio_clean.casa")

# CASA priorities -> Python levels. CASA's INFO is what tclean users read in casa.log.
_CASA_LEVELS = {
    "SEVERE": logging.ERROR,
    "WARN": logging.WARNING,
    "INFO": logging.INFO,
}


_SILENCED_CASA_MESSAGES = (
    "Leap second table TAI_UTC seems out-of-date",
    "Until the table is updated (see the CASA documentation or your system admin)",
    "times and coordinates derived from UTC could be wrong by 1s or more",
)


class CasaError(RuntimeError):
    """A casatools operation failed; the message says what and on which input."""


class _CasaLogForwarder:
    """Send CASA's log messages to the ``radio_clean.casa`` Python logger.

    casatools can only log to a file. We give it a private file in a
    temporary directory and, after each casatools operation, re-emit the
    lines it appended as Python log records.
    """

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="radio_clean-casalog-")
        self._path = os.path.join(self._dir, "casa.log")
        self._offset = 0
        sink = casatools.logsink()
        sink.setglobal(True)
        sink.setlogfile(self._path)
        sink.showconsole(False)
        # casadata's leap-second table has a validity date that an offline installation cannot
        # renew; casacore then prints a SEVERE warning to the console on every UTC conversion.
        # The table content is still right until the next leap second is announced (see
        # doc/casa-data.rst), so drop the message rather than alarm every run.
        sink.filterMsg(list(_SILENCED_CASA_MESSAGES))
        atexit.register(self.close)

    def forward(self) -> None:
        try:
            with open(self._path, "rb") as stream:
                stream.seek(self._offset)
                chunk = stream.read()
        except FileNotFoundError:
            return
        # Only forward whole lines; a partial last line waits for the next call.
        end = chunk.rfind(b"\n") + 1
        self._offset += end
        for line in chunk[:end].decode(errors="replace").splitlines():
            parts = line.split("\t", 3)
            if len(parts) == 4:
                _, priority, origin, message = parts
                level = _CASA_LEVELS.get(priority, logging.DEBUG)
                _casa_log.log(level, "%s: %s", origin.rstrip("+"), message)
            elif line.strip():
                _casa_log.info("%s", line)

    def close(self) -> None:
        self.forward()
        shutil.rmtree(self._dir, ignore_errors=True)


_forwarder = _CasaLogForwarder()


def forward_casa_log() -> None:
    """Emit CASA log lines written since the last call as Python log records."""
    _forwarder.forward()


@contextlib.contextmanager
def casa_log_forwarded() -> Iterator[None]:
    """Forward CASA's log when the enclosed casatools calls finish (or fail)."""
    try:
        yield
    finally:
        _forwarder.forward()


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
        centre_mhz = 0.5 * (self.freq_min + self.freq_max) / 1e6
        centre = f"{centre_mhz:.4f}".rstrip("0").rstrip(".")
        return f"{centre}MHz-{self.n_chan}ch"


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

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the identifying metadata: equal for the same data, wherever it lives."""
        identity = dataclasses.asdict(self)
        del identity["path"]
        return hashlib.sha256(repr(sorted(identity.items())).encode()).hexdigest()


def _is_measurement_set(path: str) -> bool:
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
    if not _is_measurement_set(path):
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
            frame_names = ["REST", "LSRK", "LSRD", "BARY", "GEO", "TOPO", "GALACTO", "LGROUP", "CMB"]
            spws = []
            for spw_id in range(metadata.nspw()):
                freqs = metadata.chanfreqs(spw_id)
                widths = metadata.chanwidths(spw_id)
                code = int(frame_codes[spw_id])
                spws.append(
                    SpectralWindowInfo(
                        spw_id=spw_id,
                        n_chan=len(freqs),
                        freq_min=float(min(freqs)),
                        freq_max=float(max(freqs)),
                        chan_width=float(widths[0]),
                        freq_frame=frame_names[code] if code < len(frame_names) else str(code),
                    )
                )
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
