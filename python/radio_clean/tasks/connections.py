"""Connections and config fields the CLEAN tasks share: dimensions, image connections, pruning."""

from __future__ import annotations

__all__ = [
    "CHUNK_DIMENSIONS",
    "IMAGE_DIMENSIONS",
    "PreviousCycleConnections",
    "PsfProductConnections",
    "channel_chunks_field",
    "image_input",
    "image_output",
    "parameters_field",
    "partition_by_observation_field",
    "remove_unused_terms",
    "shares_weight_density",
    "use_channel_chunks",
    "visibilities_input",
    "with_dimension",
]

import dataclasses
from collections.abc import Sequence

from lsst.pex.config import ConfigField, Field
from lsst.pipe.base import PipelineTaskConnections
from lsst.pipe.base import connectionTypes as cT

from ..parameters import CleanParametersConfig
from .naming import CHUNK_DATASET_PREFIX, psf_product_names

IMAGE_DIMENSIONS = ("instrument", "field", "band")
"""Every image is of one field in one band (for all observations of it)."""


CHUNK_DIMENSIONS = (*IMAGE_DIMENSIONS, "channel_chunk")
"""In a cube pipeline every image is of one channel chunk of a field in a band."""


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


def parameters_field() -> ConfigField:
    """The ``parameters`` field every CLEAN task config has."""
    return ConfigField(
        dtype=CleanParametersConfig,
        doc="tclean parameters (same names, meanings and defaults); the same in every task of a run (the "
        "pipelines' contracts check it).",
    )
