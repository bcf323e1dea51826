"""Pieces shared by the CLEAN tasks: dimensions, image connections, CASA image kinds."""

from __future__ import annotations

__all__ = [
    "CHUNK_DATASET_PREFIX",
    "CHUNK_DIMENSIONS",
    "IMAGE_DIMENSIONS",
    "PARTIAL_PREFIX",
    "channel_chunks_field",
    "shares_weight_density",
    "with_dimension",
    "partition_by_observation_field",
    "quantum_channels",
    "use_channel_chunks",
    "MAX_PSF_TERMS",
    "casa_kind",
    "connection_name",
    "cycle_index",
    "image_input",
    "image_output",
    "images_for_casa",
    "images_from_casa",
    "PreviousCycleConnections",
    "PsfProductConnections",
    "images_named",
    "images_of",
    "ms_selections",
    "previous_cycle_inputs",
    "psf_product_images",
    "psf_product_names",
    "remove_unused_terms",
    "parameters_field",
    "psf_connection_names",
    "term_connection_names",
    "visibilities_input",
]

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from lsst.pex.config import ConfigField, Field
from lsst.pipe.base import PipelineTaskConnections
from lsst.pipe.base import connectionTypes as cT

from ..casa import CasaError, MsSelection, band_spw_selection, spectral_windows_of_band
from ..image import RadioImage
from ..ms import MeasurementSetHandle
from ..parameters import MAX_TAYLOR_TERMS, CleanParametersConfig

IMAGE_DIMENSIONS = ("instrument", "field", "band")
"""Every image is of one field in one band (for all observations of it)."""

CHUNK_DIMENSIONS = (*IMAGE_DIMENSIONS, "channel_chunk")
"""In a cube pipeline every image is of one channel chunk of a field in a band."""

CHUNK_DATASET_PREFIX = "cube_"
"""Dataset types of channel chunks are named ``cube_psf``, ``cube_residual_c3``..."""

PARTIAL_PREFIX = "partial_"
"""A per-observation share of a residual is named ``partial_residual_c3``..."""

MAX_PSF_TERMS = 2 * MAX_TAYLOR_TERMS - 1
"""mtmfs makes 2 nterms - 1 PSF (and sum-of-weight) Taylor terms."""


def visibilities_input():
    """Connection to every MeasurementSet that observed the quantum's field in its band."""
    return cT.Input(
        doc="MeasurementSets (ingested with radio-clean ingest) that contain this field and band.",
        name="visibilities",
        storageClass="MeasurementSet",
        dimensions=("instrument", "observation"),
        multiple=True,
    )


def image_input(name: str, doc: str, *, dimensions: Sequence[str] = IMAGE_DIMENSIONS):
    """An input `RadioImage` connection."""
    return cT.Input(doc=doc, name=name, storageClass="RadioImage", dimensions=dimensions)


def image_output(name: str, doc: str, *, dimensions: Sequence[str] = IMAGE_DIMENSIONS):
    """An output `RadioImage` connection."""
    return cT.Output(doc=doc, name=name, storageClass="RadioImage", dimensions=dimensions)


def term_connection_names(base: str, count: int) -> list[str]:
    """Connection names of ``count`` Taylor terms: ``model``, ``model_tt1``, ..."""
    return [base] + [f"{base}_tt{term}" for term in range(1, count)]


def psf_connection_names(base: str, parameters: CleanParametersConfig) -> list[str]:
    """Connection names of the PSF-like terms (psf, sumwt, weight) the parameters make."""
    return term_connection_names(base, 2 * parameters.term_count - 1)


def casa_kind(name: str, parameters: CleanParametersConfig) -> str:
    """CASA image kind of a connection: ``model_tt1`` -> ``model.tt1``; ``psf`` -> ``psf.tt0`` for mtmfs."""
    base, _, term = name.partition("_tt")
    # mtmfs names every image by Taylor term, the PB too (pb.tt0), but not the mask or alpha.
    if parameters.deconvolver != "mtmfs" or base in ("mask", "alpha", "image_pbcor"):
        return {"image_pbcor": "image.pbcor", "alpha_error": "alpha.error"}.get(name, name)
    return f"{base}.tt{term or 0}"


def connection_name(kind: str) -> str:
    """Connection name of a CASA image kind: ``model.tt1`` -> ``model_tt1``, ``model.tt0`` -> ``model``."""
    kind = kind.replace(".tt0", "")
    return kind.replace(".tt", "_tt").replace(".pbcor", "_pbcor").replace(".error", "_error")


def images_for_casa(
    images: Mapping[str, RadioImage], parameters: CleanParametersConfig
) -> dict[str, RadioImage]:
    """Key images by CASA kind (dropping per-cycle suffixes of connection names)."""
    return {casa_kind(name, parameters): image for name, image in images.items()}


def images_from_casa(images: Mapping[str, RadioImage]) -> dict[str, RadioImage]:
    """Key CASA-made images by connection name."""
    return {connection_name(kind): image for kind, image in images.items()}


def cycle_index(label: str) -> int:
    """Number of a cycle template value: ``c3`` -> 3."""
    if not (label.startswith("c") and label[1:].isdigit()):
        raise ValueError(f"Cycle template {label!r} is not of the form c<N> (c0, c1, ...).")
    return int(label[1:])


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


def psf_product_names(parameters) -> list[str]:
    """Connection names of what MakePsfTask makes with these parameters."""
    names = ["pb"] + psf_connection_names("psf", parameters) + psf_connection_names("sumwt", parameters)
    if parameters.gridder == "mosaic":
        names += psf_connection_names("weight", parameters)
    return names


def remove_unused_terms(connections: PipelineTaskConnections, config) -> None:
    """Drop the connections of images that these parameters do not make (Taylor terms, weights)."""
    if config is None:
        return
    parameters = config.parameters
    made = set(psf_product_names(parameters))
    for name in list(connections.inputs | connections.outputs):
        base, tt, term = name.partition("_tt")
        if base in ("psf", "sumwt", "weight") and name not in made:
            delattr(connections, name)
        elif (
            tt
            and base.rsplit("_", 1)[-1] in ("model", "residual", "image")
            and int(term) >= (parameters.term_count)
        ):
            delattr(connections, name)


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


class PsfProductConnections(PipelineTaskConnections, dimensions=IMAGE_DIMENSIONS):
    """Inputs every task after MakePsfTask reads: the MSs and MakePsfTask's images."""

    visibilities = visibilities_input()
    psf = image_input("psf", "PSF from MakePsfTask (Taylor term 0 for mtmfs), with the fitted beam.")
    psf_tt1 = image_input("psf_tt1", "PSF Taylor term 1 (mtmfs).")
    psf_tt2 = image_input("psf_tt2", "PSF Taylor term 2 (mtmfs).")
    psf_tt3 = image_input("psf_tt3", "PSF Taylor term 3 (mtmfs, nterms=3).")
    psf_tt4 = image_input("psf_tt4", "PSF Taylor term 4 (mtmfs, nterms=3).")
    pb = image_input("pb", "Primary beam from MakePsfTask.")
    sumwt = image_input("sumwt", "Sum of weights from MakePsfTask (Taylor term 0 for mtmfs).")
    sumwt_tt1 = image_input("sumwt_tt1", "Sum of weights Taylor term 1 (mtmfs).")
    sumwt_tt2 = image_input("sumwt_tt2", "Sum of weights Taylor term 2 (mtmfs).")
    sumwt_tt3 = image_input("sumwt_tt3", "Sum of weights Taylor term 3 (mtmfs, nterms=3).")
    sumwt_tt4 = image_input("sumwt_tt4", "Sum of weights Taylor term 4 (mtmfs, nterms=3).")
    weight = image_input("weight", "Gridded weights (mosaic gridder only).")
    weight_tt1 = image_input("weight_tt1", "Gridded weights Taylor term 1 (mosaic, mtmfs).")
    weight_tt2 = image_input("weight_tt2", "Gridded weights Taylor term 2 (mosaic, mtmfs).")
    weight_tt3 = image_input("weight_tt3", "Gridded weights Taylor term 3 (mosaic, mtmfs, nterms=3).")
    weight_tt4 = image_input("weight_tt4", "Gridded weights Taylor term 4 (mosaic, mtmfs, nterms=3).")

    def __init__(self, *, config=None):
        super().__init__(config=config)
        remove_unused_terms(self, config)
        use_channel_chunks(self, config)


class PreviousCycleConnections(
    PsfProductConnections, dimensions=IMAGE_DIMENSIONS, defaultTemplates={"previous": "c0"}
):
    """Inputs of a task that starts from the state after cycle ``previous``."""

    previous_residual = image_input("residual_{previous}", "Residual after the previous cycle (term 0).")
    previous_residual_tt1 = image_input("residual_tt1_{previous}", "Residual Taylor term 1 (mtmfs).")
    previous_residual_tt2 = image_input(
        "residual_tt2_{previous}", "Residual Taylor term 2 (mtmfs, nterms=3)."
    )
    previous_model = image_input("model_{previous}", "Model after the previous cycle (term 0).")
    previous_model_tt1 = image_input("model_tt1_{previous}", "Model Taylor term 1 (mtmfs).")
    previous_model_tt2 = image_input("model_tt2_{previous}", "Model Taylor term 2 (mtmfs, nterms=3).")
    previous_summary = cT.Input(
        doc="Iteration summary after the previous cycle (with the iteration controller's history).",
        name="summary_{previous}",
        storageClass="StructuredDataDict",
        dimensions=IMAGE_DIMENSIONS,
    )

    def __init__(self, *, config=None):
        super().__init__(config=config)
        if config is not None and config.connections.previous == "c0":
            # After the dirty image there is no model or summary yet.
            for name in list(self.inputs):
                if name.startswith(("previous_model", "previous_summary", "previous_mask", "previous_state")):
                    delattr(self, name)


def previous_cycle_inputs(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Split ``previous_*`` inputs into ``run``'s ``residual``, ``model`` and ``previous_summary``."""
    previous = images_named(inputs, "previous_")
    return dict(
        residual={name: image for name, image in previous.items() if name.startswith("residual")},
        model={name: image for name, image in previous.items() if name.startswith("model")} or None,
        previous_summary=inputs.get("previous_summary"),
    )


def channel_chunks_field() -> Field:
    """The ``channel_chunks`` field every CLEAN task config has."""
    return Field(
        dtype=bool,
        default=False,
        doc=(
            "Image one channel chunk of a cube per quantum (the cube pipeline): quanta and images get the "
            f"channel_chunk dimension, and image dataset types the prefix {CHUNK_DATASET_PREFIX!r}."
        ),
    )


def partition_by_observation_field() -> Field:
    """The ``partition_by_observation`` field of the tasks a multi-observation pipeline splits."""
    return Field(
        dtype=bool,
        default=False,
        doc=(
            "Continuum with several observations: major cycles run once per observation and a "
            "gatherResidual step sums and normalizes their residuals (imaging weights from the density "
            "of all observations, so the result equals imaging all the data together)."
        ),
    )


def shares_weight_density(config) -> bool:
    """Whether MakePsfTask hands the weight density of all observations to per-observation major cycles.

    Only when the major cycles are partitioned by observation and the
    weights depend on the density (briggs, uniform; not natural or radial).
    """
    return config.partition_by_observation and config.parameters.weighting not in ("natural", "radial")


def with_dimension(connections: PipelineTaskConnections, name: str, prefix: str, dimension: str) -> None:
    """Give connection ``name`` one more dimension and a dataset type named ``prefix`` + its name.

    A dataset type's dimensions are fixed once it is registered, so datasets
    with the extra dimension need a name of their own.
    """
    connection = getattr(connections, name)
    changed = dataclasses.replace(
        connection, name=prefix + connection.name, dimensions=(*connection.dimensions, dimension)
    )
    setattr(connections, name, changed)


def use_channel_chunks(connections: PipelineTaskConnections, config) -> None:
    """Give a task's quanta and image datasets the ``channel_chunk`` dimension if configured so.

    Chunk datasets get their own dataset type names (``cube_psf``...).
    """
    if config is None or not getattr(config, "channel_chunks", False):
        return
    connections.dimensions.add("channel_chunk")
    for name in list(connections.inputs | connections.outputs):
        if set(getattr(connections, name).dimensions) == set(IMAGE_DIMENSIONS):
            with_dimension(connections, name, CHUNK_DATASET_PREFIX, "channel_chunk")


def quantum_channels(butlerQC) -> tuple[int, int] | None:
    """Return the output channel range (start, stop) of a chunk quantum, or `None` for a whole cube."""
    data_id = butlerQC.quantum.dataId
    if "channel_chunk" not in data_id.dimensions.names:
        return None
    record = data_id.records["channel_chunk"]
    return record.chan_start, record.chan_stop


def parameters_field() -> ConfigField:
    """The ``parameters`` field every CLEAN task config has."""
    return ConfigField(
        dtype=CleanParametersConfig,
        doc="tclean parameters (same names, meanings and defaults); the same in every task of a run (the "
        "pipelines' contracts check it).",
    )
