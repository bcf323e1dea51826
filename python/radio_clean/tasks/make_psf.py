"""MakePsfTask: imaging weights, PSF, primary beam, sums of weights, restoring beam."""

from __future__ import annotations

__all__ = ["MakePsfConfig", "MakePsfConnections", "MakePsfTask"]

from collections.abc import Sequence

from lsst.pipe.base import PipelineTask, PipelineTaskConfig, PipelineTaskConnections, Struct
from lsst.utils.timer import timeMethod

from ..casa import make_psf
from ..ms import MeasurementSetHandle
from .connections import (
    IMAGE_DIMENSIONS,
    channel_chunks_field,
    image_output,
    parameters_field,
    partition_by_observation_field,
    remove_unused_terms,
    shares_weight_density,
    use_channel_chunks,
    visibilities_input,
)
from .inputs import images_from_casa, ms_selections, quantum_channels
from .naming import psf_product_names


class MakePsfConnections(PipelineTaskConnections, dimensions=IMAGE_DIMENSIONS):
    """Connections of MakePsfTask: the MSs in, PSF-like images out."""

    visibilities = visibilities_input()
    psf = image_output(
        "psf", "Point spread function, peak 1 (Taylor term 0 for mtmfs); carries the fitted beam."
    )
    psf_tt1 = image_output("psf_tt1", "PSF Taylor term 1 (mtmfs).")
    psf_tt2 = image_output("psf_tt2", "PSF Taylor term 2 (mtmfs).")
    psf_tt3 = image_output("psf_tt3", "PSF Taylor term 3 (mtmfs, nterms=3).")
    psf_tt4 = image_output("psf_tt4", "PSF Taylor term 4 (mtmfs, nterms=3).")
    pb = image_output("pb", "Primary beam, peak 1.")
    sumwt = image_output("sumwt", "Sum of imaging weights (Taylor term 0 for mtmfs).")
    sumwt_tt1 = image_output("sumwt_tt1", "Sum of weights Taylor term 1 (mtmfs).")
    sumwt_tt2 = image_output("sumwt_tt2", "Sum of weights Taylor term 2 (mtmfs).")
    sumwt_tt3 = image_output("sumwt_tt3", "Sum of weights Taylor term 3 (mtmfs, nterms=3).")
    sumwt_tt4 = image_output("sumwt_tt4", "Sum of weights Taylor term 4 (mtmfs, nterms=3).")
    weight = image_output("weight", "Gridded weights (mosaic gridder only).")
    weight_tt1 = image_output("weight_tt1", "Gridded weights Taylor term 1 (mosaic, mtmfs).")
    weight_tt2 = image_output("weight_tt2", "Gridded weights Taylor term 2 (mosaic, mtmfs).")
    weight_tt3 = image_output("weight_tt3", "Gridded weights Taylor term 3 (mosaic, mtmfs, nterms=3).")
    weight_tt4 = image_output("weight_tt4", "Gridded weights Taylor term 4 (mosaic, mtmfs, nterms=3).")
    weight_density = image_output(
        "weight_density",
        "Gridded weight density of all observations, for per-observation major cycles (briggs, uniform).",
    )

    def __init__(self, *, config=None):
        super().__init__(config=config)
        remove_unused_terms(self, config)
        use_channel_chunks(self, config)
        if config is not None and not shares_weight_density(config):
            del self.weight_density


class MakePsfConfig(PipelineTaskConfig, pipelineConnections=MakePsfConnections):
    """Configuration of MakePsfTask."""

    parameters = parameters_field()
    channel_chunks = channel_chunks_field()
    partition_by_observation = partition_by_observation_field()


class MakePsfTask(PipelineTask):
    """Make the PSF, primary beam and sums of weights for one field in one band.

    The PSF's restoring beam is the Gaussian CASA fits to it (down to
    ``psfcutoff``), which RestoreTask uses unless ``restoringbeam`` is set.
    """

    ConfigClass = MakePsfConfig
    _DefaultName = "makePsf"

    @timeMethod
    def run(
        self,
        *,
        visibilities: Sequence[MeasurementSetHandle],
        field: str,
        band: str,
        channels: tuple[int, int] | None = None,
    ) -> Struct:
        """Grid the weights of all observations of the field in the band.

        Parameters
        ----------
        visibilities : `~collections.abc.Sequence` [`MeasurementSetHandle`]
            MeasurementSets (read-only).
        field : `str`
            Field name.
        band : `str`
            Band name.
        channels : `tuple` [`int`, `int`], optional
            Output channels (start, stop) of a channel chunk of a cube.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            One `RadioImage` attribute per output connection (``psf``,
            ``pb``, ``sumwt``... and ``weight_density`` when partitioned by
            observation).
        """
        selections = ms_selections(visibilities, field, band, self.config.parameters.spw)
        parameters = self.config.parameters
        weight_density = shares_weight_density(self.config)
        images = images_from_casa(
            make_psf(selections, parameters.to_tclean(channels), weight_density=weight_density)
        )
        beam = images["psf"].restoring_beam
        self.log.info("PSF of %s in %s from %d MS; fitted beam %s.", field, band, len(selections), beam)
        outputs = {name: images[name] for name in psf_product_names(parameters)}
        if weight_density:
            outputs["weight_density"] = images["gridwt"]
        return Struct(**outputs)

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        inputs = butlerQC.get(inputRefs)
        data_id = butlerQC.quantum.dataId
        outputs = self.run(
            visibilities=inputs["visibilities"],
            field=data_id["field"],
            band=data_id["band"],
            channels=quantum_channels(butlerQC),
        )
        butlerQC.put(outputs, outputRefs)
