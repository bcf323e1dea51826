"""MeasurementSets as Butler datasets: a handle holding the path, and its formatter."""

from __future__ import annotations

__all__ = ["MeasurementSetHandle"]

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class MeasurementSetHandle:
    """A MeasurementSet in the repository: the path casatools opens.

    Reading a ``visibilities`` dataset never loads visibilities into memory;
    the imaging tasks hand ``path`` to casatools, which opens the MS
    read-only.
    """

    path: str
    """Absolute local path of the MS directory."""


def __getattr__(name: str) -> Any:
    # Repositories written before the formatters moved name this one in their datastore records.
    if name == "MeasurementSetFormatter":
        from .formatters import MeasurementSetFormatter

        return MeasurementSetFormatter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
