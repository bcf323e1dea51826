"""MeasurementSets as Butler datasets: a handle holding the path, and its formatter."""

from __future__ import annotations

__all__ = ["MeasurementSetFormatter", "MeasurementSetHandle"]

import dataclasses
from typing import Any

from lsst.daf.butler import FormatterV2
from lsst.resources import ResourcePath


@dataclasses.dataclass(frozen=True)
class MeasurementSetHandle:
    """A MeasurementSet in the repository: the path casatools opens.

    Reading a ``visibilities`` dataset never loads visibilities into memory;
    the imaging tasks hand ``path`` to casatools, which opens the MS
    read-only.
    """

    path: str
    """Absolute local path of the MS directory."""


class MeasurementSetFormatter(FormatterV2):
    """Read a directory-valued ``visibilities`` dataset as a `MeasurementSetHandle`.

    Writing is not supported: MeasurementSets enter a repository only through
    ``radio-clean ingest``.
    """

    can_read_from_uri = True
    default_extension = ".ms"
    supported_extensions = frozenset({".ms", ".MS", ""})

    def read_from_uri(self, uri: ResourcePath, component: str | None = None, expected_size: int = -1) -> Any:
        if not uri.isLocal:
            raise NotImplementedError(f"MeasurementSet {uri} is not on a local file system.")
        return MeasurementSetHandle(path=uri.ospath.rstrip("/"))

    def write_local_file(self, in_memory_dataset: Any, uri: ResourcePath) -> None:
        raise NotImplementedError("MeasurementSets are added with `radio-clean ingest`, not butler.put.")
