"""Checks made before an imaging run does any work: data to image, MSs to read, room to run.

Each check refuses with one sentence that says what is wrong and what to do;
none of them writes anything.
"""

from __future__ import annotations

__all__ = ["PreflightError", "check_before_work", "check_selection_has_data", "check_visibilities_readable"]

import logging
import os
from collections.abc import Sequence

from lsst.daf.butler import Butler

from .casa import CasaError, field_names_and_channels, selected_ids, unflagged_rows
from .parameters import CleanParametersConfig
from .resources import ResourceError, check_resources

# tclean's selection parameter -> the casatools msselect key.
_SELECTION_KEYS = {
    "timerange": "time",
    "uvrange": "uvdist",
    "antenna": "baseline",
    "scan": "scan",
    "intent": "scanintent",
}


class PreflightError(RuntimeError):
    """The run cannot start; the message says why and what to do."""


def _selection(parameters: CleanParametersConfig) -> tuple[dict[str, str], str]:
    """The msselect record of the parameters (without field), and how a user wrote it."""
    record: dict[str, str] = {}
    words = []
    spw = str(getattr(parameters, "spw", "") or "").strip()
    if spw:
        # The channels apply to every window of the band; '*' stands for the windows here.
        record["spw"] = f"*{spw}" if spw.startswith(":") else spw
        words.append(f"spw={spw}")
    for name, key in _SELECTION_KEYS.items():
        value = str(getattr(parameters, name, "") or "").strip()
        if value:
            record[key] = value
            words.append(f"{name}={value}")
    return record, " ".join(words)


def check_selection_has_data(
    ms_paths: Sequence[str], parameters: CleanParametersConfig, fields: Sequence[str] = ()
) -> None:
    """Refuse a run in which a field to image has no unflagged data under the selection.

    Only the flags of the first selected rows are read when there are data;
    all selected flags when there are none.

    Parameters
    ----------
    ms_paths : `~collections.abc.Sequence` [`str`]
        MeasurementSets (read-only).
    parameters : `CleanParametersConfig`
        tclean parameters (``spw``, ``timerange``, ``uvrange``, ``antenna``,
        ``scan``, ``intent``).
    fields : `~collections.abc.Sequence` [`str`], optional
        Fields to image (default every field of the MSs).

    Raises
    ------
    PreflightError
        Naming the first field with nothing to image.
    """
    paths = [os.path.abspath(path) for path in ms_paths]
    names_by_path = {}
    for path in paths:
        try:
            names_by_path[path] = field_names_and_channels(path)[0]
        except CasaError:
            return  # not an MS: ingest refuses it with its own sentence
    all_names = list(dict.fromkeys(name for names in names_by_path.values() for name in names))
    selection, selection_words = _selection(parameters)
    for field in fields or all_names:
        holding = [path for path in paths if _selects_a_field(path, field, names_by_path[path])]
        if not holding:
            raise PreflightError(
                f"Field {field} is not in {', '.join(paths)}; the fields there are {', '.join(all_names)}."
            )
        found = 0
        for path in holding:
            try:
                found += unflagged_rows(path, {"field": field, **selection})
            except CasaError as err:
                raise PreflightError(str(err)) from None
            if found:
                break
        if not found:
            with_words = f" with {selection_words}" if selection_words else ""
            raise PreflightError(
                f"Field {field} has no unflagged data{with_words} in {', '.join(holding)} (every selected "
                "visibility is flagged, or the selection matches none); change the selection or unflag "
                "the data."
            )


def _selects_a_field(path: str, field: str, names: Sequence[str]) -> bool:
    """Whether tclean's ``field`` entry (a name, an id, a range, a pattern) picks a field of the MS."""
    if field in names:
        return True
    # CASA logs a warning for an entry that selects nothing: this is the question being asked.
    casa_logger = logging.getLogger("radio_clean.casa")
    level = casa_logger.level
    casa_logger.setLevel(logging.ERROR)
    try:
        return bool(selected_ids(path, field=field)["field"])
    except CasaError:
        return False
    finally:
        casa_logger.setLevel(level)


def check_visibilities_readable(
    butler: Butler, collections: Sequence[str], observations: Sequence[int]
) -> None:
    """Refuse a run that would read an ingested MS that is gone or unreadable.

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        Butler on the repository.
    collections : `~collections.abc.Sequence` [`str`]
        Input collections of the run, in search order.
    observations : `~collections.abc.Sequence` [`int`]
        IDs of the observations the run reads.

    Raises
    ------
    PreflightError
        Naming the MS and its observation.
    """
    if not observations:
        return
    records = {record.id: record for record in butler.registry.queryDimensionRecords("observation")}
    names = {observation_id: record.name for observation_id, record in records.items()}
    refs = []
    for instrument in sorted({records[o].instrument for o in observations if o in records}):
        ids = [o for o in observations if o in records and records[o].instrument == instrument]
        refs += butler.query_datasets(
            "visibilities",
            collections=list(collections),
            where=f"observation IN ({', '.join(str(int(o)) for o in ids)})",
            instrument=instrument,
            explain=False,
        )
    for ref in refs:
        path = butler.getURI(ref).ospath.rstrip("/")
        name = names.get(ref.dataId["observation"], ref.dataId["observation"])
        if not os.path.exists(path):
            raise PreflightError(
                f"The MeasurementSet {path} of observation {name} no longer exists (moved or deleted since "
                "it was ingested); give its new path on the command line, or put it back."
            )
        table = os.path.join(path, "table.dat")
        if not (os.path.isdir(path) and os.access(table, os.R_OK) and os.access(path, os.R_OK | os.X_OK)):
            raise PreflightError(
                f"The MeasurementSet {path} of observation {name} cannot be read; make it readable, or give "
                "the path of a readable copy on the command line."
            )


def check_before_work(
    ms_paths: Sequence[str],
    parameters: CleanParametersConfig,
    *,
    fields: Sequence[str] = (),
    jobs: int = 1,
    chunk_channels: int | None = None,
    repo: str,
    export_dir: str,
    check_resources_needed: bool = True,
) -> None:
    """Everything ``radio-clean image`` checks before it creates or writes anything.

    The selection must leave unflagged data for every field, and (unless
    ``check_resources_needed`` is false) the images must fit in memory and
    on disk (`radio_clean.resources`).

    Raises
    ------
    PreflightError
        The first check that fails, in one sentence.
    """
    if check_resources_needed:
        try:
            check_resources(
                ms_paths,
                parameters,
                fields=fields,
                jobs=jobs,
                chunk_channels=chunk_channels,
                repo=repo,
                export_dir=export_dir,
            )
        except ResourceError as err:
            raise PreflightError(str(err)) from None
    check_selection_has_data(ms_paths, parameters, fields)
