"""Checks made before any work: options, paths, permissions, free space, the output collection, the MSs.

Everything here only looks (a probe file made to test that a directory can
be written is removed at once), so a run refused by one of these checks
leaves the repository, the export directory and the MeasurementSets as they
were. Each refusal is one `PreflightError` whose message says what is wrong
and what to do.
"""

from __future__ import annotations

__all__ = [
    "PreflightError",
    "check_count",
    "check_free_space",
    "check_measurement_set_readable",
    "check_output_collection",
    "check_writable_directory",
    "estimate_product_bytes",
]

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence

from .parameters import CleanParametersConfig

_REPO_IMAGES = 20
"""Images of one field and band a run writes into the repository, at least (start, a few cycles, finish)."""
_EXPORT_IMAGES = 14
"""Images of one field and band written to the export directory (FITS of every product, PNGs)."""
_REPO_MARGIN = 16 * 2**20
"""Room for the registry database, configs, logs and metadata of a run."""


class PreflightError(RuntimeError):
    """A run cannot start; the message says what is wrong and what to do."""


def check_count(option: str, value: int | None) -> None:
    """Refuse a count option (``--jobs``, ``--chunk-channels``) below 1; `None` means the default."""
    if value is not None and value < 1:
        raise PreflightError(f"{option} must be a whole number of 1 or more, not {value}.")


def _nearest_existing(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


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
    existing = _nearest_existing(path)
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


def estimate_product_bytes(parameters: CleanParametersConfig) -> tuple[int, int]:
    """Bytes one field and band needs, at least, in the repository and in the export directory.

    A floor, not a forecast: the number of major cycles and, for a cube
    with ``nchan=-1``, of channels are known only once the run goes on.

    Returns
    -------
    repo_bytes, export_bytes : `int`
        Space needed in the repository and in the export directory.
    """
    imsize = list(parameters.imsize)
    nx, ny = (imsize * 2)[:2]
    cube = parameters.specmode in ("cube", "cubedata")
    nchan = parameters.nchan if cube and parameters.nchan > 0 else 1
    nterms = parameters.nterms if parameters.deconvolver == "mtmfs" else 1
    n_stokes = max(1, len(parameters.stokes))
    image_bytes = 4 * nx * ny * nchan * n_stokes * nterms
    return _REPO_IMAGES * image_bytes + _REPO_MARGIN, _EXPORT_IMAGES * image_bytes


def _human(n_bytes: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n_bytes < 1024 or unit == "GiB":
            return f"{n_bytes:.0f} {unit}" if unit == "bytes" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    raise AssertionError("unreachable")


def check_free_space(path: str, needed: int, *, option: str) -> None:
    """Refuse to start when the file system of ``path`` has less than ``needed`` bytes free.

    Raises
    ------
    PreflightError
        With what is needed, what is free and what to change.
    """
    existing = _nearest_existing(path)
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise PreflightError(
            f"{option} {path}: its file system has {_human(free)} free, less than the {_human(needed)} "
            f"this run needs at least; free some space there or give another {option}."
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
    foreign = [child for child in info.children if child not in inputs and not child.startswith(f"{output}/")]
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
    import casatools

    from .casa import casa_log_forwarded

    table = casatools.table()
    column = None
    # CASA logs the read error too; the one sentence below says it, with the MS's name.
    casa_logger = logging.getLogger("radio_clean.casa")
    level = casa_logger.level
    casa_logger.setLevel(logging.CRITICAL)
    try:
        with casa_log_forwarded():
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
        casa_logger.setLevel(level)
