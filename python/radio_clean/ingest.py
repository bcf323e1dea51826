"""Ingest MeasurementSets into a radio_clean repository as ``visibilities`` datasets."""

from __future__ import annotations

__all__ = [
    "INGEST_RUN",
    "IngestError",
    "IngestOutcome",
    "TRANSFER_MODES",
    "VISIBILITIES",
    "digest_cache_of",
    "ingest_measurement_sets",
    "location_run",
    "visibilities_dataset_type",
]

import dataclasses
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence

import astropy.time
from lsst.daf.butler import Butler, DatasetRef, DatasetType, FileDataset, MissingCollectionError, Timespan

from .casa import CasaError, MsInfo, read_ms_info
from .ms_identity import DigestCache, ms_content_digest

_log = logging.getLogger(__name__)

DIGEST_CACHE_NAME = ".ms-digests.json"
"""File in the repository directory caching the SHA-256 of MS files (`radio_clean.ms_identity`)."""
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
    collection: str = INGEST_RUN
    """RUN collection holding the ``visibilities`` dataset that points at ``ms_path``."""


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


def _read_all(ms_paths: Sequence[str], cache: DigestCache) -> list[MsInfo]:
    infos = []
    for path in ms_paths:
        try:
            info = read_ms_info(path)
            infos.append(dataclasses.replace(info, content_digest=ms_content_digest(info.path, cache)))
        except CasaError as err:
            raise IngestError(f"Nothing was ingested: {err}") from err
        except OSError as err:
            raise IngestError(
                f"Nothing was ingested: {os.path.abspath(path)} could not be read ({err.strerror}: "
                f"{err.filename}); make every file of the MS readable."
            ) from err
    cache.save()
    return infos


def digest_cache_of(butler: Butler) -> DigestCache:
    """The cache of MS file digests kept in the repository's directory (in memory if it has none)."""
    for root in butler.get_datastore_roots().values():
        if root is not None and root.isLocal:
            return DigestCache(os.path.join(root.ospath, DIGEST_CACHE_NAME))
    return DigestCache()


def location_run(run: str, observation: str, ms_path: str) -> str:
    """RUN collection for the dataset of ``observation`` read from ``ms_path`` rather than from ``run``."""
    return f"{run}/{observation}/{hashlib.sha256(ms_path.encode()).hexdigest()[:8]}"


def _dataset_path(butler: Butler, dataset_type: DatasetType, instrument: str, observation_id: int, run: str):
    """Path the ``visibilities`` dataset of an observation in ``run`` points at (None if there is none)."""
    try:
        ref = butler.find_dataset(
            dataset_type, {"instrument": instrument, "observation": observation_id}, collections=run
        )
    except MissingCollectionError:
        return None
    return None if ref is None else butler.getURI(ref).ospath.rstrip("/")


def ingest_measurement_sets(
    butler: Butler,
    ms_paths: Sequence[str],
    *,
    transfer: str = "direct",
    run: str = INGEST_RUN,
    staging_root: str | None = None,
    read_given_paths: bool = False,
) -> list[IngestOutcome]:
    """Register MeasurementSets as ``visibilities`` datasets.

    Every MS is read (read-only) and checked before anything is written, so
    a bad path leaves the repository unchanged. An MS is identified by its
    metadata and the SHA-256 of its files (`radio_clean.ms_identity`):
    re-ingesting an MS already in the repository (same content, wherever it
    now lives) does nothing; an MS whose content changed since it was
    ingested from the same path becomes a new observation, and the old one
    keeps its record (old runs' provenance stays true to what they read).

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
    read_given_paths : `bool`, optional
        If `True`, an MS whose content is already ingested from another path
        (moved, copied, or the original deleted) gets a dataset pointing at
        the path given here, in a RUN collection of its own
        (`location_run`), so that a run searching
        ``IngestOutcome.collection`` first reads the MS it was given.

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
    infos = _read_all(ms_paths, digest_cache_of(butler))
    existing = _observation_records(butler)
    by_fingerprint = {record.fingerprint: record for record in existing}
    # Several observations may have come from one path (an MS changed in place); the last counts.
    by_path = {record.ms_path: record for record in sorted(existing, key=lambda r: r.id)}
    taken_names = {record.name for record in existing}
    next_id = max((record.id for record in existing), default=0) + 1
    dataset_type = visibilities_dataset_type(butler)

    plan: list[tuple[MsInfo, str, int, str, str | None] | IngestOutcome] = []
    seen_in_call: dict[str, str] = {}
    for info in infos:
        known = by_fingerprint.get(info.fingerprint)
        if known is not None and read_given_paths:
            stored = _dataset_path(butler, dataset_type, known.instrument, known.id, run)
            if stored is None or os.path.realpath(stored) != os.path.realpath(info.path):
                location = location_run(run, known.name, info.path)
                found = _dataset_path(butler, dataset_type, known.instrument, known.id, location)
                message = (
                    f"{info.path} is already ingested as observation {known.name} (from {known.ms_path}); "
                    f"it is read from {info.path}."
                )
                plan.append(
                    IngestOutcome(info.path, known.name, False, message, location)
                    if found is not None
                    else (info, known.name, known.id, location, message)
                )
                continue
        if known is not None or info.fingerprint in seen_in_call:
            name = known.name if known is not None else seen_in_call[info.fingerprint]
            where = known.ms_path if known is not None else "earlier on this command line"
            plan.append(
                IngestOutcome(
                    info.path,
                    name,
                    False,
                    f"{info.path} is already ingested as observation {name} ({where}).",
                    run,
                )
            )
            continue
        name = _unique_observation_name(info, taken_names)
        taken_names.add(name)
        seen_in_call[info.fingerprint] = name
        message = None
        if info.path in by_path:
            message = (
                f"{info.path} has changed since it was ingested as observation {by_path[info.path].name}; "
                f"its current content is ingested as observation {name}."
            )
        plan.append((info, name, next_id, run, message))
        next_id += 1

    butler.registry.registerDatasetType(dataset_type)
    butler.registry.registerRun(run)
    outcomes = []
    for item in plan:
        if isinstance(item, IngestOutcome):
            _log.info("%s", item.message)
            outcomes.append(item)
            continue
        info, name, observation_id, item_run, message = item
        if message is not None and item_run == run:
            _log.warning("%s", message)
        new_observation = item_run == run
        if not new_observation:
            butler.registry.registerRun(item_run)
        outcomes.append(
            _ingest_one(
                butler,
                info,
                name,
                observation_id,
                dataset_type,
                transfer if new_observation else "direct",
                item_run,
                staging_root,
                new_observation=new_observation,
                message=message,
            )
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
    *,
    new_observation: bool = True,
    message: str | None = None,
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
            if new_observation:
                _insert_records(butler, info, observation_id, name)
            ref = DatasetRef(
                dataset_type, {"instrument": info.telescope, "observation": observation_id}, run=run
            )
            butler.ingest(FileDataset(path=source, refs=[ref]), transfer=butler_transfer)
    finally:
        if staging_dir is not None:
            shutil.rmtree(staging_dir, ignore_errors=True)
    if message is None:
        message = (
            f"Ingested {info.path} as observation {name} ({info.telescope}; fields "
            f"{', '.join(f.name for f in info.fields)}; bands "
            f"{', '.join(s.band_name for s in info.spectral_windows)}; transfer={transfer})."
        )
    _log.info("%s", message)
    return IngestOutcome(info.path, name, True, message, run)
