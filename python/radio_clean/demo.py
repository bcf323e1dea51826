"""Real VLA MeasurementSets for demonstrations and tests, made from casadata's UVFITS.

The ``casadata`` wheel ships two VLA observations as UVFITS under ``demo/``.
`write_demo_data` converts them to MeasurementSets with casatools'
``ms.fromfits``:

``3C273XC1``
    3C273 at X band (8.085 GHz), continuum, one channel, calibrated: 7669 rows,
    one field, 28 antennas in the ANTENNA table of which 27 have data. Made by
    default.
``NGC5921``
    The HI line (1.413 GHz) towards NGC 5921, 63 channels, three fields (two
    calibrators and the galaxy), NOT calibrated. Made only when asked for.

Each MS is written under a temporary name in the target directory and renamed
into place only when complete, so an interrupted run never leaves a half-written
MS where a finished one is expected (at worst a hidden ``.radio_clean-tmp-*``
directory remains).
"""

from __future__ import annotations

__all__ = ["DEMO_DATASETS", "DemoDataset", "write_demo_data", "write_demo_ms"]

import dataclasses
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable

from .casa import CasaError, casa_log_forwarded, casatools, is_measurement_set

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DemoDataset:
    """One demonstration observation shipped as UVFITS in casadata."""

    name: str
    """Name used to select the data set, e.g. ``"3C273XC1"``."""
    fits_path: str
    """Path of the UVFITS file relative to casadata's data directory."""
    ms_name: str
    """File name of the MeasurementSet written from it."""
    description: str

    def resolve_fits(self) -> str:
        """Return the absolute path of the UVFITS file.

        Raises
        ------
        CasaError
            If casadata does not contain the file.
        """
        path = casatools.ctsys.resolve(self.fits_path)
        if not os.path.isfile(path):
            raise CasaError(
                f"casadata has no {self.fits_path} (looked for {path}); reinstall the casadata wheel."
            )
        return path


DEMO_DATASETS: dict[str, DemoDataset] = {
    dataset.name: dataset
    for dataset in (
        DemoDataset(
            name="3C273XC1",
            fits_path="demo/3C273XC1.fits",
            ms_name="3C273XC1.ms",
            description="VLA X band (8.085 GHz) continuum of 3C273, 1 channel, calibrated",
        ),
        DemoDataset(
            name="NGC5921",
            fits_path="demo/NGC5921.fits",
            ms_name="NGC5921.ms",
            description="VLA HI line (1.413 GHz) of NGC 5921, 63 channels, 3 fields, NOT calibrated",
        ),
    )
}
"""The demonstration data sets `write_demo_data` knows, by name."""


def _prepare_directory(directory: str) -> str:
    directory = os.path.abspath(directory)
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as err:
        raise CasaError(
            f"Cannot create the demo data directory {directory} ({err.strerror or err})."
        ) from err
    if not os.access(directory, os.W_OK | os.X_OK):
        raise CasaError(f"Cannot write demo data to {directory}: the directory is not writable.")
    return directory


def write_demo_ms(name: str, directory: str, *, overwrite: bool = False) -> str:
    """Write one demonstration MeasurementSet into ``directory``.

    Parameters
    ----------
    name : `str`
        Key of `DEMO_DATASETS`: ``"3C273XC1"`` or ``"NGC5921"``.
    directory : `str`
        Directory to write into; created if missing.
    overwrite : `bool`, optional
        Replace an MS that is already there. Otherwise an existing MS is kept
        and its path returned.

    Returns
    -------
    path : `str`
        Absolute path of the MeasurementSet.

    Raises
    ------
    ValueError
        If ``name`` is not a known data set.
    CasaError
        If the directory cannot be written, the path is taken by something that
        is not a MeasurementSet, or the conversion fails.
    """
    try:
        dataset = DEMO_DATASETS[name]
    except KeyError:
        raise ValueError(
            f"Unknown demo data set {name!r}; choose from {', '.join(sorted(DEMO_DATASETS))}."
        ) from None
    directory = _prepare_directory(directory)
    target = os.path.join(directory, dataset.ms_name)
    if os.path.lexists(target):
        if not is_measurement_set(target):
            raise CasaError(
                f"{target} exists but is not a MeasurementSet; move it away or choose another directory."
            )
        if not overwrite:
            _log.info("%s already exists; keeping it (pass overwrite=True to rewrite it).", target)
            return target
    fits = dataset.resolve_fits()

    scratch = tempfile.mkdtemp(prefix=f".radio_clean-tmp-{dataset.ms_name}-", dir=directory)
    try:
        partial = os.path.join(scratch, dataset.ms_name)
        _log.info("Converting %s to %s (%s).", fits, target, dataset.description)
        ms_tool = casatools.ms()
        try:
            with casa_log_forwarded():
                ok = ms_tool.fromfits(partial, fits)
        except Exception as err:
            raise CasaError(f"casatools could not convert {fits} to a MeasurementSet: {err}") from err
        finally:
            ms_tool.close()
            ms_tool.done()
        if ok is False or not is_measurement_set(partial):
            raise CasaError(f"casatools could not convert {fits} to a MeasurementSet (see the CASA log).")
        _install(partial, target, scratch, overwrite=overwrite)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _install(partial: str, target: str, scratch: str, *, overwrite: bool) -> None:
    """Move the finished MS ``partial`` to ``target`` (same file system)."""
    if overwrite and os.path.lexists(target):
        # A directory cannot be renamed over a non-empty one: move the old one aside first.
        os.rename(target, os.path.join(scratch, "replaced"))
        _log.info("Replacing %s.", target)
    try:
        os.rename(partial, target)
    except OSError as err:
        if os.path.lexists(target) and is_measurement_set(target):
            # Another process finished the same MS first; theirs is as good as ours.
            _log.info("%s appeared while converting; keeping it.", target)
            return
        raise CasaError(f"Cannot move the new MeasurementSet into place at {target} ({err}).") from err


def write_demo_data(
    directory: str,
    *,
    datasets: Iterable[str] = ("3C273XC1",),
    overwrite: bool = False,
) -> list[str]:
    """Write demonstration MeasurementSets converted from casadata's VLA UVFITS.

    Parameters
    ----------
    directory : `str`
        Directory to write into; created if missing.
    datasets : iterable of `str`, optional
        Which data sets to write (keys of `DEMO_DATASETS`). By default only
        ``"3C273XC1"``; add ``"NGC5921"`` for the uncalibrated HI cube.
    overwrite : `bool`, optional
        Rewrite MeasurementSets that already exist. Otherwise existing ones
        are left untouched (and their paths returned).

    Returns
    -------
    paths : `list` [`str`]
        Absolute paths of the MeasurementSets, in the order of ``datasets``.

    Raises
    ------
    ValueError
        If a data set name is unknown.
    CasaError
        If the directory cannot be written or a conversion fails.
    """
    names = [datasets] if isinstance(datasets, str) else list(datasets)
    unknown = [name for name in names if name not in DEMO_DATASETS]
    if unknown:
        raise ValueError(
            f"Unknown demo data set(s) {', '.join(map(repr, unknown))}; "
            f"choose from {', '.join(sorted(DEMO_DATASETS))}."
        )
    return [write_demo_ms(name, directory, overwrite=overwrite) for name in names]
