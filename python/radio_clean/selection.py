"""tclean's data selection (``field``, ``spw`` and the rest) on the fields and bands of a repository.

A run images one field and band per data ID. tclean's ``field`` (names, ids,
id ranges, ``4C*``) and ``spw`` (window ids, ranges, frequencies) are read by
CASA's own MS selection in every ingested MeasurementSet, and the ids they
pick are mapped to the repository's fields and bands (the ``field_ids`` and
``spw_ids`` of the ``observation_field`` and ``observation_band`` records).
The other selections (``timerange``, ``uvrange``, ``antenna``, ``scan``,
``observation``, ``intent``) go to CASA unchanged; they are parsed here once
so that a bad one is refused before any imaging.
"""

from __future__ import annotations

__all__ = ["parse_field_selection", "selection_query"]

from collections.abc import Sequence
from typing import Any

from .casa import CasaError, selected_ids
from .parameters import CleanParametersConfig, ParameterError

# tclean's selection parameters that CASA's msseltoindex parses, by its name for them.
_CHECKED_SELECTIONS = {
    "timerange": "time",
    "uvrange": "uvrange",
    "antenna": "baseline",
    "scan": "scan",
    "observation": "observation",
}


def parse_field_selection(value: Any) -> list[str]:
    """Return tclean's ``field`` as a list of entries (``'0~2,3C286'`` -> ``['0~2', '3C286']``).

    Parameters
    ----------
    value : `str`, `int` or `list`
        ``field`` as given on the command line or in a YAML file: names,
        ids, id ranges, patterns (``4C*``), comma-separated or as a list.

    Raises
    ------
    ParameterError
        If an entry is empty or a list holds something else than names and ids.
    """
    items = value if isinstance(value, list) else [value]
    entries: list[str] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise ParameterError(
                f"Value {value!r} of tclean parameter 'field' is not field names or ids "
                "(e.g. field=0~2,3C286)."
            )
        text = str(item).strip().strip("[]'\"")
        entries += [entry.strip().strip("'\"") for entry in text.split(",")] if text else []
    if any(not entry for entry in entries):
        raise ParameterError(
            f"Value {value!r} of tclean parameter 'field' has an empty entry (e.g. field=0~2,3C286)."
        )
    return entries


def selection_query(
    butler, observations: Sequence[int], fields: Sequence[str], parameters: CleanParametersConfig
) -> tuple[str, set[str] | None]:
    """Return the data-query terms for the fields, and the bands, that tclean's selection picks.

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        Repository holding the ingested MeasurementSets.
    observations : `~collections.abc.Sequence` [`int`]
        The ``observation`` ids (MeasurementSets) to image.
    fields : `~collections.abc.Sequence` [`str`]
        tclean ``field`` entries (see `parse_field_selection`); empty: all.
    parameters : `CleanParametersConfig`
        tclean parameters (``spw`` and the other selections).

    Returns
    -------
    terms : `str`
        ``" AND field IN (...)"`` as needed.
    bands : `set` [`str`] or `None`
        The bands with a window that ``spw`` selects; `None` if ``spw`` is
        empty (all bands).

    Raises
    ------
    ParameterError
        If an entry of ``field`` or ``spw`` selects nothing in any of the
        MeasurementSets, or CASA cannot read a selection.
    """
    records = [r for r in butler.registry.queryDimensionRecords("observation") if r.id in observations]
    terms = ""
    bands = None
    if fields:
        names = _selected(butler, records, "field", fields, "observation_field", "field", "field_ids")
        terms += f" AND field IN ({', '.join(repr(name) for name in sorted(names))})"
    if parameters.spw.strip():
        entries = [entry.strip() for entry in parameters.spw.split(",")]
        # ':10~50' is every window's channels 10~50 (radio_clean's short form of '*:10~50').
        entries = [f"*{entry}" if entry.startswith(":") else entry for entry in entries]
        bands = _selected(butler, records, "spw", entries, "observation_band", "band", "spw_ids")
    for name, casa_name in _CHECKED_SELECTIONS.items():
        value = getattr(parameters, name)
        if value.strip():
            errors = []
            for record in records:
                try:
                    selected_ids(record.ms_path, **{casa_name: value})
                except CasaError as err:
                    errors.append(str(err))
            if len(errors) == len(records):
                raise ParameterError(f"{name}={value!r} cannot be used: {errors[0].rstrip('.')}.")
    return terms, bands


def _selected(
    butler, records, parameter: str, entries: Sequence[str], element: str, dimension: str, ids_name: str
) -> set[str]:
    """Names of ``dimension`` whose ids in some MS the ``entries`` of ``parameter`` select."""
    chosen: set[str] = set()
    for entry in entries:
        matched = False
        for record in records:
            try:
                ids = set(selected_ids(record.ms_path, **{parameter: entry})[parameter])
            except CasaError:
                continue
            for row in butler.registry.queryDimensionRecords(
                element, instrument=record.instrument, observation=record.id
            ):
                if ids & {int(i) for i in getattr(row, ids_name).split(",") if i}:
                    chosen.add(getattr(row, dimension))
                    matched = True
        if not matched:
            known = sorted(
                {
                    f"{getattr(row, dimension)} ({ids_name.removesuffix('_ids')} {getattr(row, ids_name)})"
                    for record in records
                    for row in butler.registry.queryDimensionRecords(
                        element, instrument=record.instrument, observation=record.id
                    )
                }
            )
            raise ParameterError(
                f"{parameter}={entry!r} selects nothing in the MeasurementSets; they have {', '.join(known)}."
            )
    return chosen
