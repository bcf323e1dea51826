"""DeconvolveTask: tclean's convergence check and one minor cycle."""

from __future__ import annotations

__all__ = ["DeconvolveConfig", "DeconvolveConnections", "DeconvolveTask"]

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from lsst.pipe.base import PipelineTask, PipelineTaskConfig, Struct
from lsst.pipe.base import connectionTypes as cT
from lsst.utils.timer import timeMethod

from ..casa import IterationHistory, run_minor_cycle
from ..image import RadioImage
from ..ms import MeasurementSetHandle
from .connections import (
    IMAGE_DIMENSIONS,
    PreviousCycleConnections,
    channel_chunks_field,
    image_input,
    image_output,
    parameters_field,
)
from .inputs import (
    images_for_casa,
    images_from_casa,
    ms_selections,
    previous_cycle_inputs,
    psf_product_images,
    quantum_channels,
)
from .naming import cycle_index, term_connection_names


def _empty_models(residual: Mapping[str, RadioImage]) -> dict[str, RadioImage]:
    """Zero models shaped like the residuals, for CLEAN that stops before its first minor cycle."""
    return {
        name.replace("residual", "model"): image.replace(
            pixels=np.zeros_like(image.pixels), brightness_unit="Jy/pixel", restoring_beam=None
        )
        for name, image in residual.items()
    }


class DeconvolveConnections(
    PreviousCycleConnections,
    dimensions=IMAGE_DIMENSIONS,
    defaultTemplates={"cycle": "c1", "previous": "c0"},
):
    """Connections of DeconvolveTask for minor cycle ``cycle``."""

    mask = image_input("mask_{cycle}", "This cycle's clean mask from AutoMaskTask.")
    model = image_output("model_{cycle}", "Model after this minor cycle (Taylor term 0 for mtmfs), Jy/pixel.")
    model_tt1 = image_output("model_tt1_{cycle}", "Model Taylor term 1 (mtmfs).")
    model_tt2 = image_output("model_tt2_{cycle}", "Model Taylor term 2 (mtmfs, nterms=3).")
    summary = cT.Output(
        doc="Iteration summary after this cycle: iterdone, nmajordone, stop code and reason, peak residuals, "
        "and the records that let the next cycle rebuild tclean's iteration controller.",
        name="summary_{cycle}",
        storageClass="StructuredDataDict",
        dimensions=IMAGE_DIMENSIONS,
    )


class DeconvolveConfig(PipelineTaskConfig, pipelineConnections=DeconvolveConnections):
    """Configuration of DeconvolveTask."""

    parameters = parameters_field()
    channel_chunks = channel_chunks_field()

    def validate(self) -> None:
        super().validate()
        cycle = cycle_index(self.connections.cycle)
        if cycle < 1 or self.connections.previous != f"c{cycle - 1}":
            raise ValueError(
                f"DeconvolveTask runs in cycles c1 and later with connections.previous = c{cycle - 1}."
            )


class DeconvolveTask(PipelineTask):
    """Decide, as tclean does, whether CLEAN has converged; if not, run a minor cycle.

    The iteration controller (cycle threshold from the PSF sidelobe level and
    ``cyclefactor``, ``cycleniter``, ``niter``, ``threshold``, ``nsigma``,
    ``nmajor``, stop codes) is CASA's own, rebuilt from the previous cycle's
    summary, so its decisions are tclean's. When it stops CLEAN, the model
    is passed on unchanged and the summary says why (the loop runs no
    further cycle for this chain).
    """

    ConfigClass = DeconvolveConfig
    _DefaultName = "deconvolve"

    @timeMethod
    def run(
        self,
        *,
        visibilities: Sequence[MeasurementSetHandle],
        field: str,
        band: str,
        channels: tuple[int, int] | None = None,
        psf_products: Mapping[str, RadioImage],
        residual: Mapping[str, RadioImage],
        mask: RadioImage,
        model: Mapping[str, RadioImage] | None = None,
        previous_summary: Mapping[str, Any] | None = None,
    ) -> Struct:
        """Run this cycle's convergence check and minor cycle.

        Parameters
        ----------
        visibilities : `~collections.abc.Sequence` [`MeasurementSetHandle`]
            MeasurementSets (only their image definition is used).
        field, band : `str`
            Field and band names.
        channels : `tuple` [`int`, `int`], optional
            Output channels (start, stop) of a channel chunk of a cube.
        psf_products : `~collections.abc.Mapping` [`str`, `RadioImage`]
            MakePsfTask's images by connection name.
        residual : `~collections.abc.Mapping` [`str`, `RadioImage`]
            The residual to clean, by connection name.
        mask : `RadioImage`
            This cycle's clean mask.
        model : `~collections.abc.Mapping` [`str`, `RadioImage`], optional
            The model so far (none before the first cycle).
        previous_summary : `~collections.abc.Mapping`, optional
            The previous cycle's summary (none before the first cycle).

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``model`` (and ``model_tt1``...) and ``summary``.
        """
        cycle = cycle_index(self.config.connections.cycle)
        parameters = self.config.parameters
        history = (
            IterationHistory.from_dict(previous_summary["history"])
            if previous_summary
            else IterationHistory()
        )
        if history.stopped:
            raise RuntimeError(
                f"CLEAN had already stopped before cycle c{cycle} ({previous_summary['stop_reason']}); "
                "the loop runs no cycle after that."
            )
        images = images_for_casa({**psf_products, **residual, **(model or {}), "mask": mask}, parameters)
        result = run_minor_cycle(
            parameters.to_tclean(channels),
            images,
            history,
            ms_selections(visibilities, field, band, self.config.parameters.spw),
        )
        models = images_from_casa(result.models) or _empty_models(residual)
        summary = {"cycle": cycle, **result.summary, "history": result.history.to_dict()}
        if result.history.stopped:
            self.log.info(
                "Cycle c%d: CLEAN stopped: %s (stop code %d), %d iterations, %d major cycles.",
                cycle,
                summary["stop_reason"],
                summary["stopcode"],
                summary["iterdone"],
                summary["nmajordone"],
            )
        else:
            self.log.info(
                "Cycle c%d: peak residual %.4g, cycle threshold %.4g (%s); %d iterations so far.",
                cycle,
                summary["peak_residual_before_cycle"][-1],
                summary["cyclethreshold"],
                residual[term_connection_names("residual", parameters.term_count)[0]].brightness_unit,
                summary["iterdone"],
            )
        self.metadata["iterdone"] = int(summary["iterdone"])
        self.metadata["cyclethreshold"] = summary["cyclethreshold"]
        if len(result.history.cycles) > len(history.cycles):  # this quantum ran a minor cycle
            self.metadata["peak_residual"] = float(summary["peak_residual_before_cycle"][-1])
        terms = term_connection_names("model", parameters.term_count)
        return Struct(**{name: models[name] for name in terms}, summary=summary)

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        inputs = butlerQC.get(inputRefs)
        data_id = butlerQC.quantum.dataId
        outputs = self.run(
            visibilities=inputs["visibilities"],
            field=data_id["field"],
            band=data_id["band"],
            channels=quantum_channels(butlerQC),
            psf_products=psf_product_images(inputs, self.config.parameters),
            mask=inputs["mask"],
            **previous_cycle_inputs(inputs),
        )
        butlerQC.put(outputs, outputRefs)
