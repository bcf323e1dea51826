"""MajorCycleTask: one major cycle (predict the model, grid the residual visibilities)."""

from __future__ import annotations

__all__ = ["MajorCycleConfig", "MajorCycleConnections", "MajorCycleTask"]

from collections.abc import Mapping, Sequence

import numpy as np
from lsst.pipe.base import PipelineTask, PipelineTaskConfig, Struct
from lsst.utils.timer import timeMethod

from ..casa import run_major_cycle
from ..image import RadioImage
from ..ms import MeasurementSetHandle
from .connections import (
    IMAGE_DIMENSIONS,
    PsfProductConnections,
    channel_chunks_field,
    image_input,
    image_output,
    parameters_field,
    partition_by_observation_field,
    shares_weight_density,
    with_dimension,
)
from .inputs import (
    images_for_casa,
    images_from_casa,
    images_of,
    ms_selections,
    psf_product_images,
    quantum_channels,
)
from .naming import PARTIAL_PREFIX, cycle_index, term_connection_names


class MajorCycleConnections(
    PsfProductConnections,
    dimensions=IMAGE_DIMENSIONS,
    defaultTemplates={"cycle": "c0"},
):
    """Connections of MajorCycleTask; ``cycle`` c0 makes the dirty image."""

    model = image_input("model_{cycle}", "Model after this cycle's minor cycle (Taylor term 0 for mtmfs).")
    model_tt1 = image_input("model_tt1_{cycle}", "Model Taylor term 1 (mtmfs).")
    model_tt2 = image_input("model_tt2_{cycle}", "Model Taylor term 2 (mtmfs, nterms=3).")
    residual = image_output("residual_{cycle}", "Residual image after this cycle (Taylor term 0 for mtmfs).")
    residual_tt1 = image_output("residual_tt1_{cycle}", "Residual Taylor term 1 (mtmfs).")
    residual_tt2 = image_output("residual_tt2_{cycle}", "Residual Taylor term 2 (mtmfs, nterms=3).")

    weight_density = image_input(
        "weight_density", "Weight density of all observations from MakePsfTask (partitioned, briggs/uniform)."
    )

    def __init__(self, *, config=None):
        super().__init__(config=config)
        if config is None:
            return
        if cycle_index(config.connections.cycle) == 0:
            for name in list(self.inputs):
                if name.startswith("model"):
                    delattr(self, name)
        if not shares_weight_density(config):
            del self.weight_density
        if config.partition_by_observation:
            # One quantum per observation, whose residual is its share for GatherResidualTask.
            self.dimensions.add("observation")
            for name in list(self.inputs | self.outputs):
                if name.startswith("residual"):
                    with_dimension(self, name, PARTIAL_PREFIX, "observation")


class MajorCycleConfig(PipelineTaskConfig, pipelineConnections=MajorCycleConnections):
    """Configuration of MajorCycleTask."""

    parameters = parameters_field()
    channel_chunks = channel_chunks_field()
    partition_by_observation = partition_by_observation_field()

    def validate(self) -> None:
        super().validate()
        if self.partition_by_observation and self.parameters.specmode not in ("mfs", "cont"):
            raise ValueError("partition_by_observation is for continuum (specmode='mfs') imaging only.")
        cycle_index(self.connections.cycle)


class MajorCycleTask(PipelineTask):
    """Make the residual image of one field in one band from all its observations.

    Cycle c0 grids the visibilities into the dirty image. Later cycles
    subtract the model's visibilities (predicted on the fly; the MS is
    opened read-only and no model column is written) and grid the residual.
    """

    ConfigClass = MajorCycleConfig
    _DefaultName = "majorCycle"

    @timeMethod
    def run(
        self,
        *,
        visibilities: Sequence[MeasurementSetHandle],
        field: str,
        band: str,
        channels: tuple[int, int] | None = None,
        psf_products: Mapping[str, RadioImage],
        model: Mapping[str, RadioImage] | None = None,
        weight_density: RadioImage | None = None,
    ) -> Struct:
        """Run one major cycle.

        Parameters
        ----------
        visibilities : `~collections.abc.Sequence` [`MeasurementSetHandle`]
            MeasurementSets (read-only).
        field, band : `str`
            Field and band names.
        channels : `tuple` [`int`, `int`], optional
            Output channels (start, stop) of a channel chunk of a cube.
        psf_products : `~collections.abc.Mapping` [`str`, `RadioImage`]
            MakePsfTask's images by connection name (psf, pb, sumwt...).
        model : `~collections.abc.Mapping` [`str`, `RadioImage`], optional
            The model by connection name (``model``, ``model_tt1``...); none
            for the dirty image.
        weight_density : `RadioImage`, optional
            Weight density of all observations, for a partition's imaging
            weights (``partition_by_observation`` with briggs/uniform).

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``residual`` (and ``residual_tt1``... for mtmfs); with
            ``partition_by_observation``, this observation's share of it,
            not yet divided by the sum of weights.
        """
        parameters = self.config.parameters
        images = images_for_casa({**psf_products, **(model or {})}, parameters)
        if weight_density is not None:
            images["gridwt"] = weight_density
        residuals = images_from_casa(
            run_major_cycle(
                ms_selections(visibilities, field, band, self.config.parameters.spw),
                parameters.to_tclean(channels),
                images,
                normalize=not self.config.partition_by_observation,
            )
        )
        # The whole image's peak (the deconvolver's is within the mask): a QA figure of this cycle.
        peak = float(np.nanmax(np.abs(residuals["residual"].pixels)))
        self.metadata["peak_abs_residual"] = peak
        self.log.info(
            "Major cycle %s of %s in %s: peak residual %.6g.",
            self.config.connections.cycle,
            field,
            band,
            peak,
        )
        return Struct(
            **{name: residuals[name] for name in term_connection_names("residual", parameters.term_count)}
        )

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        inputs = butlerQC.get(inputRefs)
        data_id = butlerQC.quantum.dataId
        outputs = self.run(
            visibilities=inputs["visibilities"],
            field=data_id["field"],
            band=data_id["band"],
            channels=quantum_channels(butlerQC),
            psf_products=psf_product_images(inputs, self.config.parameters),
            model=images_of(inputs, "model"),
            weight_density=inputs.get("weight_density"),
        )
        butlerQC.put(outputs, outputRefs)
