"""From a quantum's inputs to a task's ``run`` arguments: images by kind, MS selections, channels."""

from __future__ import annotations

__all__ = [
    "images_for_casa",
    "images_from_casa",
    "images_named",
    "images_of",
    "ms_selections",
    "previous_cycle_inputs",
    "psf_product_images",
    "quantum_channels",
]

from collections.abc import Mapping, Sequence
from typing import Any

from ..casa import CasaError, MsSelection, band_spw_selection, spectral_windows_of_band
from ..image import RadioImage
from ..ms import MeasurementSetHandle
from ..parameters import CleanParametersConfig
from .naming import casa_kind, connection_name, psf_product_names


def images_for_casa(
    images: Mapping[str, RadioImage], parameters: CleanParametersConfig
) -> dict[str, RadioImage]:
    """Key images by CASA kind (dropping per-cycle suffixes of connection names)."""
    return {casa_kind(name, parameters): image for name, image in images.items()}


def images_from_casa(images: Mapping[str, RadioImage]) -> dict[str, RadioImage]:
    """Key CASA-made images by connection name."""
    return {connection_name(kind): image for kind, image in images.items()}


def ms_selections(
    visibilities: Sequence[MeasurementSetHandle], field: str, band: str, channels: str = ""
) -> list[MsSelection]:
    """Select a field and band (and optionally channels of it) from each MeasurementSet.

    Parameters
    ----------
    visibilities : `~collections.abc.Sequence` [`MeasurementSetHandle`]
        The MeasurementSets.
    field : `str`
        Field name (the ``field`` dimension).
    band : `str`
        Band name (the ``band`` dimension); the spectral windows of that
        set-up are selected in each MS.
    channels : `str`, optional
        tclean's ``spw`` (``0:10~50``, ``*:5~20``, ``:10~50``...): of the
        windows it selects, those of the band are imaged; empty for all
        channels of the band. A MeasurementSet none of whose windows of
        the band it selects is left out.
    """
    selections = []
    for handle in sorted(visibilities, key=lambda h: h.path):
        spw = band_spw_selection(handle.path, spectral_windows_of_band(handle.path, band), channels)
        if spw:
            selections.append(MsSelection(path=handle.path, field=field, spw=spw))
    if not selections:
        raise CasaError(f"spw={channels!r} selects no spectral window of band {band} in the MeasurementSets.")
    return selections


def images_named(inputs: Mapping[str, object], prefix: str) -> dict[str, RadioImage]:
    """Pick the images of connections starting with ``prefix``, keyed without it.

    ``images_named(inputs, "previous_")`` turns ``previous_residual_tt1`` into
    ``residual_tt1``.
    """
    return {
        name.removeprefix(prefix): value
        for name, value in inputs.items()
        if name.startswith(prefix) and isinstance(value, RadioImage)
    }


def images_of(inputs: Mapping[str, object], base: str) -> dict[str, RadioImage] | None:
    """Pick the Taylor terms of one image (``model``, ``model_tt1``...) out of a task's inputs."""
    images = {name: value for name, value in inputs.items() if name == base or name.startswith(f"{base}_tt")}
    return images or None


def psf_product_images(
    inputs: Mapping[str, object], parameters: CleanParametersConfig
) -> dict[str, RadioImage]:
    """Pick MakePsfTask's images out of a task's inputs."""
    return {name: inputs[name] for name in psf_product_names(parameters)}


def previous_cycle_inputs(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Split ``previous_*`` inputs into ``run``'s ``residual``, ``model`` and ``previous_summary``."""
    previous = images_named(inputs, "previous_")
    return dict(
        residual={name: image for name, image in previous.items() if name.startswith("residual")},
        model={name: image for name, image in previous.items() if name.startswith("model")} or None,
        previous_summary=inputs.get("previous_summary"),
    )


def quantum_channels(butlerQC) -> tuple[int, int] | None:
    """Return the output channel range (start, stop) of a chunk quantum, or `None` for a whole cube."""
    data_id = butlerQC.quantum.dataId
    if "channel_chunk" not in data_id.dimensions.names:
        return None
    record = data_id.records["channel_chunk"]
    return record.chan_start, record.chan_stop
