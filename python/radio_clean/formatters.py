"""Butler formatters: how each of radio_clean's storage classes is read and written.

Repositories record a formatter's full name with every dataset; the names
these had before they were gathered here (``radio_clean.image.``,
``radio_clean.automask.``, ``radio_clean.ms.``) still import.
"""

from __future__ import annotations

__all__ = ["AutoMaskStateFormatter", "MeasurementSetFormatter", "RadioImageFitsFormatter"]

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from astropy.io import fits
from lsst.daf.butler import DatasetProvenance, FormatterV2
from lsst.resources import ResourcePath

from .automask import AutoMaskState
from .fits_cards import observation_cards
from .image import RadioImage
from .image_fits import read_fits
from .ms import MeasurementSetHandle

# Keys of the Butler's provenance in an image's PROVENANCE table.
_BUTLER_PROVENANCE_PREFIX = "LSST.BUTLER"


class RadioImageFitsFormatter(FormatterV2):
    """Read and write `RadioImage` datasets as FITS files.

    Read parameter ``channels`` (a ``(start, stop)`` tuple or a step-1
    `slice`) reads only those channels from the file. On write, the Butler's
    provenance (dataset id, run, data ID, inputs, quantum) is added to the
    image's provenance under keys starting with ``LSST.BUTLER.``, replacing
    any such keys the image already had, and the primary header gets the
    cards exportfits writes about a tclean image that the data ID tells
    (``TELESCOP``, ``INSTRUME``, ``OBJECT``, ``BTYPE``, ``OBSRA``/``OBSDEC``,
    ``VELREF``, ...; see `radio_clean.fits_cards.observation_cards`). The
    registry records when a dataset was stored; ``DATE`` is left to export.
    """

    default_extension: ClassVar[str] = ".fits"
    supported_extensions: ClassVar[frozenset[str]] = frozenset({".fits"})
    unsupported_parameters: ClassVar[frozenset[str]] = frozenset()
    can_read_from_local_file: ClassVar[bool] = True

    def read_from_local_file(self, path: str, component: str | None = None, expected_size: int = -1) -> Any:
        if component is not None:
            raise ValueError(f"RadioImage has no components; asked for {component!r}.")
        parameters = self.file_descriptor.parameters or {}
        unknown = set(parameters) - {"channels"}
        if unknown:
            raise ValueError(f"RadioImage reads take only the 'channels' parameter; got {sorted(unknown)}.")
        return read_fits(path, parameters.get("channels"))

    def write_local_file(self, in_memory_dataset: Any, uri: ResourcePath) -> None:
        if not isinstance(in_memory_dataset, RadioImage):
            raise TypeError(
                f"RadioImageFitsFormatter writes RadioImage objects, not {type(in_memory_dataset).__name__}."
            )
        in_memory_dataset.to_fits(
            uri.ospath, overwrite=True, header_cards=self._header_cards(in_memory_dataset)
        )

    def _header_cards(self, image: RadioImage) -> Sequence[fits.Card]:
        """The cards the data ID gives: telescope and field (none for an image of another kind)."""
        data_id = self.dataset_ref.dataId if self.dataset_ref is not None else {}
        if "instrument" not in data_id or "field" not in data_id:
            return ()
        return observation_cards(
            image.wcs, telescope=str(data_id["instrument"]), object_name=str(data_id["field"])
        )

    def add_provenance(
        self, in_memory_dataset: Any, /, *, provenance: DatasetProvenance | None = None
    ) -> Any:
        if not isinstance(in_memory_dataset, RadioImage):
            return in_memory_dataset
        provenance = provenance if provenance is not None else DatasetProvenance()
        butler_entries = provenance.to_flat_dict(
            self.dataset_ref, prefix=_BUTLER_PROVENANCE_PREFIX, sep=".", simple_types=True, max_inputs=2000
        )
        merged = dict(in_memory_dataset.provenance)
        DatasetProvenance.strip_provenance_from_flat_dict(merged)
        merged.update(butler_entries)
        # Only the provenance changes: no need to check and normalize pixels, WCS and beams again.
        return in_memory_dataset._with_provenance(merged)


class AutoMaskStateFormatter(FormatterV2):
    """Read and write `AutoMaskState` datasets as compressed ``.npz`` files of boolean arrays."""

    default_extension: ClassVar[str] = ".npz"
    supported_extensions: ClassVar[frozenset[str]] = frozenset({".npz"})
    can_read_from_local_file: ClassVar[bool] = True

    def read_from_local_file(self, path: str, component: str | None = None, expected_size: int = -1) -> Any:
        with np.load(path) as arrays:
            return AutoMaskState.from_arrays({name: arrays[name] for name in arrays.files})

    def write_local_file(self, in_memory_dataset: Any, uri: ResourcePath) -> None:
        with open(uri.ospath, "wb") as stream:
            np.savez_compressed(stream, **in_memory_dataset.to_arrays())


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
