"""Ingest MeasurementSets into a radio_clean repository as ``visibilities`` datasets."""

from __future__ import annotations

__all__ = [
    "INGEST_RUN",
    "IngestError",
    "IngestOutcome",
    "TRANSFER_MODES",
    "VISIBILITIES",
    "ingest_measurement_sets",
    "visibilities_dataset_type",
]

import dataclasses
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence

import astropy.time
from lsst.daf.butler import Butler, DatasetRef, DatasetType, FileDataset, Timespan

from .casa import CasaError, MsInfo, read_ms_info

_log = logging.getLogger(__name__)

VISIBILITIES = "visibilities"
"""Dataset type name of an ingested MeasurementSet."""
INGEST_RUN = "raw/visibilities"
"""Default RUN collection that ingested MeasurementSets go into."""
TRANSFER_MODES = ("direct", "symlink", "copy")


class IngestError(RuntimeError):
    """An MS cannot be ingested; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class IngestOutcome:
    """What ingest did with one MeasurementSet."""

    ms_path: str
    observation: str
    """Name of the observation dimension record for this MS."""
    ingested: bool
    """False if the MS was already in the repository (nothing was done)."""
    message: str


def visibilities_dataset_type(butler: Butler) -> DatasetType:
    """Return the ``visibilities`` dataset type of a radio_clean repository."""
    return DatasetType(
        VISIBILITIES, ["instrument", "observation"], "MeasurementSet", universe=butler.dimensions
    )


def _observation_records(butler: Butler) -> list:
    return list(butler.registry.queryDimensionRecords("observation"))


def _unique_observation_name(info: MsInfo, taken: set[str]) -> str:
    stem = os.path.basename(info.path.rstrip("/"))
    for suffix in (".ms", ".MS"):
        stem = stem.removesuffix(suffix)
    if stem not in taken:
        return stem
    # Same directory name, different data (e.g. /night1/target.ms and /night2/target.ms).
    return f"{stem}-{info.fingerprint[:8]}"


def _insert_records(butler: Butler, info: MsInfo, observation_id: int, observation_name: str) -> None:
    registry = butler.registry
    instrument = info.telescope
    registry.syncDimensionData("instrument", {"name": instrument})
    for field in info.fields:
        # A field is a named target: the first pointing ingested gives its direction.
        if not list(registry.queryDimensionRecords("field", instrument=instrument, field=field.name)):
            registry.insertDimensionData(
                "field",
                {"instrument": instrument, "name": field.name, "ra": field.ra_deg, "dec": field.dec_deg},
            )
    for spw in info.spectral_windows:
        if not list(registry.queryDimensionRecords("band", instrument=instrument, band=spw.band_name)):
            registry.insertDimensionData(
                "band",
                {
                    "instrument": instrument,
                    "name": spw.band_name,
                    "freq_min": spw.freq_min,
                    "freq_max": spw.freq_max,
                    "n_chan": spw.n_chan,
                    "chan_width": spw.chan_width,
                    "freq_frame": spw.freq_frame,
                },
            )
    timespan = Timespan(
        astropy.time.Time(info.time_start_mjd, format="mjd", scale="utc"),
        astropy.time.Time(info.time_end_mjd, format="mjd", scale="utc"),
    )
    registry.insertDimensionData(
        "observation",
        {
            "instrument": instrument,
            "id": observation_id,
            "name": observation_name,
            "ms_path": info.path,
            "fingerprint": info.fingerprint,
            "n_rows": info.n_rows,
            "observer": info.observer[:128],
            "project": info.project[:128],
            "data_columns": ",".join(info.data_columns),
            "timespan": timespan,
        },
    )
    registry.insertDimensionData(
        "observation_field",
        *[
            {
                "instrument": instrument,
                "observation": observation_id,
                "field": field.name,
                "field_ids": ",".join(str(i) for i in field.field_ids),
            }
            for field in info.fields
        ],
    )
    spws_by_band: dict[str, list[int]] = {}
    for spw in info.spectral_windows:
        spws_by_band.setdefault(spw.band_name, []).append(spw.spw_id)
    registry.insertDimensionData(
        "observation_band",
        *[
            {
                "instrument": instrument,
                "observation": observation_id,
                "band": band,
                "spw_ids": ",".join(str(i) for i in spw_ids),
            }
            for band, spw_ids in spws_by_band.items()
        ],
    )


def _read_all(ms_paths: Sequence[str]) -> list[MsInfo]:
    infos = []
    for path in ms_paths:
        try:
            infos.append(read_ms_info(path))
        except CasaError as err:
            raise IngestError(f"Nothing was ingested: {err}") from err
    return infos


def ingest_measurement_sets(
    butler: Butler,
    ms_paths: Sequence[str],
    *,
    transfer: str = "direct",
    run: str = INGEST_RUN,
    staging_root: str | None = None,
) -> list[IngestOutcome]:
    """Register MeasurementSets as ``visibilities`` datasets.

    Every MS is read (read-only) and checked before anything is written, so
    a bad path leaves the repository unchanged. Re-ingesting an MS already
    in the repository (same content, wherever it now lives) does nothing.

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        Writeable Butler on a radio_clean repository.
    ms_paths : `~collections.abc.Sequence` [`str`]
        MeasurementSet directories.
    transfer : `str`, optional
        ``direct`` (the MS stays where it is and the repository records its
        path), ``symlink`` (a link inside the repository) or ``copy`` (a copy
        inside the repository).
    run : `str`, optional
        RUN collection for the datasets.
    staging_root : `str`, optional
        Directory for the temporary copy made by ``transfer="copy"``; best on
        the repository's file system (the CLI uses the repository root).
        Default is the system temporary directory.

    Returns
    -------
    outcomes : `list` [`IngestOutcome`]
        One per MS, in order.

    Raises
    ------
    IngestError
        If any MS cannot be ingested; nothing is ingested then.
    """
    if transfer not in TRANSFER_MODES:
        raise IngestError(f"Unknown transfer mode {transfer!r}; use one of {', '.join(TRANSFER_MODES)}.")
    infos = _read_all(ms_paths)
    existing = _observation_records(butler)
    by_fingerprint = {record.fingerprint: record for record in existing}
    by_path = {record.ms_path: record for record in existing}
    taken_names = {record.name for record in existing}
    next_id = max((record.id for record in existing), default=0) + 1

    plan: list[tuple[MsInfo, str, int] | IngestOutcome] = []
    seen_in_call: dict[str, str] = {}
    for info in infos:
        known = by_fingerprint.get(info.fingerprint)
        if known is not None or info.fingerprint in seen_in_call:
            name = known.name if known is not None else seen_in_call[info.fingerprint]
            where = known.ms_path if known is not None else "earlier on this command line"
            plan.append(
                IngestOutcome(
                    info.path,
                    name,
                    False,
                    f"{info.path} is already ingested as observation {name} ({where}).",
                )
            )
            continue
        if info.path in by_path:
            raise IngestError(
                f"Nothing was ingested: {info.path} was ingested before as observation "
                f"{by_path[info.path].name} but its content has changed since; ingest the new data "
                "from a new path."
            )
        name = _unique_observation_name(info, taken_names)
        taken_names.add(name)
        seen_in_call[info.fingerprint] = name
        plan.append((info, name, next_id))
        next_id += 1

    dataset_type = visibilities_dataset_type(butler)
    butler.registry.registerDatasetType(dataset_type)
    butler.registry.registerRun(run)
    outcomes = []
    for item in plan:
        if isinstance(item, IngestOutcome):
            _log.info("%s", item.message)
            outcomes.append(item)
            continue
        info, name, observation_id = item
        outcomes.append(
            _ingest_one(butler, info, name, observation_id, dataset_type, transfer, run, staging_root)
        )
    return outcomes


def _ingest_one(
    butler: Butler,
    info: MsInfo,
    name: str,
    observation_id: int,
    dataset_type: DatasetType,
    transfer: str,
    run: str,
    staging_root: str | None,
) -> IngestOutcome:
    staging_dir = None
    source = info.path
    butler_transfer = transfer
    try:
        if transfer == "copy":
            # The datastore cannot copy a directory; copy next to the repository and let it move
            # the copy into place, so a failure never leaves a half-copied MS in the datastore.
            staging_dir = tempfile.mkdtemp(prefix=".ingest-", dir=staging_root)
            source = os.path.join(staging_dir, os.path.basename(info.path))
            shutil.copytree(info.path, source, symlinks=True)
            butler_transfer = "move"
        with butler.transaction():
            _insert_records(butler, info, observation_id, name)
            ref = DatasetRef(
                dataset_type, {"instrument": info.telescope, "observation": observation_id}, run=run
            )
            butler.ingest(FileDataset(path=source, refs=[ref]), transfer=butler_transfer)
    finally:
        if staging_dir is not None:
            shutil.rmtree(staging_dir, ignore_errors=True)
    message = (
        f"Ingested {info.path} as observation {name} ({info.telescope}; fields "
        f"{', '.join(f.name for f in info.fields)}; bands "
        f"{', '.join(s.band_name for s in info.spectral_windows)}; transfer={transfer})."
    )
    _log.info("%s", message)
    return IngestOutcome(info.path, name, True, message)
