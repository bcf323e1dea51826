"""Checks made before an imaging run does any work: options, paths, room to run, data to image.

Everything here only looks (a probe file made to test that a directory can
be written is removed at once), so a run refused by one of these checks
leaves the repository, the export directory and the MeasurementSets as they
were. Each refusal is one `PreflightError` whose message says what is wrong
and what to do.
"""

from __future__ import annotations

__all__ = [
    "PreflightError",
    "check_before_work",
    "check_count",
    "check_measurement_set_readable",
    "check_output_collection",
    "check_selection_has_data",
    "check_visibilities_readable",
    "check_writable_directory",
]

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence

from lsst.daf.butler import Butler

from .casa import CasaError, field_names_and_channels, selected_ids, unflagged_rows
from .parameters import CleanParametersConfig
from .resources import ResourceError, check_resources, nearest_existing

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
                f"field={field}: no such field in {', '.join(paths)} (fields: {', '.join(all_names)}); "
                "give field= one of those, or leave it out to image all."
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
    with _casa_log_below(logging.ERROR):
        try:
            return bool(selected_ids(path, field=field)["field"])
        except CasaError:
            return False


@contextlib.contextmanager
def _casa_log_below(level: int) -> Iterator[None]:
    """Drop CASA's forwarded log records below ``level``: what it says of a failure a check expects."""
    casa_logger = logging.getLogger("radio_clean.casa")
    saved = casa_logger.level
    casa_logger.setLevel(level)
    try:
        yield
    finally:
        casa_logger.setLevel(saved)


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
    output: str | None = None,
    inputs: Sequence[str] = (),
    check_resources_needed: bool = True,
) -> None:
    """Everything ``radio-clean image`` checks before it creates or writes anything.

    Counts are 1 or more; the repository and export directories can be
    written; ``output`` is new or an output of ``radio-clean image`` to
    resume; every MS can be read to the end of its columns; (unless
    ``check_resources_needed`` is false) the images fit in memory and on
    disk (`radio_clean.resources`); the selection leaves unflagged data for
    every field.

    Raises
    ------
    PreflightError
        The first check that fails, in one sentence.
    """
    check_count("--jobs", jobs)
    check_count("--chunk-channels", chunk_channels)
    check_writable_directory(repo, option="--repo", purpose="the repository")
    check_writable_directory(export_dir, option="--export", purpose="the FITS files")
    if output is not None and os.path.exists(os.path.join(repo, "butler.yaml")):
        from .repo import open_repo

        with open_repo(repo) as butler:
            check_output_collection(butler, output, inputs)
    for path in ms_paths:
        if os.path.isfile(os.path.join(path, "table.dat")):  # anything else: ingest says what it is
            check_measurement_set_readable(path)
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


def check_count(option: str, value: int | None) -> None:
    """Refuse a count option (``--jobs``, ``--chunk-channels``) below 1; `None` means the default."""
    if value is not None and value < 1:
        raise PreflightError(f"{option} must be a whole number of 1 or more, not {value}.")


def _probe_write(directory: str) -> OSError | None:
    """Whether a file can be made in ``directory`` (as this user, on this file system); the error if not."""
    try:
        with tempfile.TemporaryFile(dir=directory, prefix=".radio_clean-probe-"):
            pass
    except OSError as err:
        return err
    return None


def check_writable_directory(path: str, *, option: str, purpose: str) -> None:
    """Refuse a directory option that names a file or a place this process cannot write.

    Parameters
    ----------
    path : `str`
        The directory (it need not exist yet).
    option : `str`
        How the user gave it (``--repo``, ``--export``), for the message.
    purpose : `str`
        What goes there (``the repository``, ``the FITS files``), for the message.

    Raises
    ------
    PreflightError
        If ``path`` or one of its parents is a file, or the directory (or
        the nearest one that exists) cannot be written.
    """
    existing = nearest_existing(path)
    if not os.path.isdir(existing):
        what = path if existing == os.path.abspath(path) else f"{path} (its parent {existing} is a file)"
        raise PreflightError(f"{option} {what} is a file, not a directory; give a directory for {purpose}.")
    error = _probe_write(existing)
    if error is not None:
        where = "" if existing == os.path.abspath(path) else f" (to make {path} in)"
        raise PreflightError(
            f"{option} {path}: cannot write in {existing}{where}: {error.strerror or error}; "
            f"give a directory you can write to for {purpose}."
        )
    database = os.path.join(path, "gen3.sqlite3")
    if os.path.exists(database) and not os.access(database, os.W_OK):
        raise PreflightError(
            f"{option} {path}: the registry database {database} cannot be written (read-only); "
            f"give a repository you can write to for {purpose}."
        )


def check_output_collection(butler, output: str, inputs: Sequence[str]) -> None:
    """Refuse an ``--output`` that names a collection radio-clean image did not make.

    An output collection of ``radio-clean image`` is a CHAINED collection whose
    children are its own step RUNs (``OUTPUT/start``, ``OUTPUT/cycle001``...)
    and the input collections; naming one resumes it. Anything else (the
    ingest RUN ``raw/visibilities``, a step RUN, someone else's chain) would
    be written into or redefined.

    Raises
    ------
    PreflightError
        If ``output`` exists and is not such a collection.
    """
    from lsst.daf.butler import CollectionType, MissingCollectionError

    try:
        info = butler.collections.get_info(output)
    except MissingCollectionError:
        return
    foreign = [
        child
        for child in info.children
        if not child.startswith(f"{output}/")
        and not any(child == name or child.startswith(f"{name}/") for name in inputs)
    ]
    if info.type is not CollectionType.CHAINED or foreign:
        kind = info.type.name
        raise PreflightError(
            f"--output {output} names an existing {kind} collection that radio-clean image did not make; "
            "give a new name, or the output collection of an earlier radio-clean image run to resume it."
        )


def check_measurement_set_readable(path: str) -> None:
    """Read the first and last cell of every column of the MS's main table: a cut-short file fails here.

    Casacore keeps each column's data in storage-manager files
    (``table.f2_TSM1``...); a file cut short (a copy that ran out of disk, an
    interrupted transfer) is found when a cell in its missing part is read,
    which would otherwise happen in the middle of a major cycle.

    Raises
    ------
    PreflightError
        Naming the MS and the column that cannot be read.
    """
    from .casa import casa_log_forwarded, casatools

    table = casatools.table()
    column = None
    # CASA logs the read error too; the one sentence below says it, with the MS's name.
    try:
        with _casa_log_below(logging.CRITICAL), casa_log_forwarded():
            table.open(path, nomodify=True)
            n_rows = table.nrows()
            for column in table.colnames():
                for row in {0, n_rows - 1} if n_rows else ():
                    if table.iscelldefined(column, row):
                        table.getcell(column, row)
    except RuntimeError as err:
        reason = str(err).strip().splitlines()[0].rstrip(".") if str(err).strip() else type(err).__name__
        raise PreflightError(
            f"MeasurementSet {path} cannot be read{f' (column {column})' if column else ''}: {reason}; "
            "its table files are damaged or cut short, so image an intact copy."
        ) from None
    finally:
        table.close()
