"""AutoMaskTask: the clean mask for each minor cycle."""

from __future__ import annotations

__all__ = ["AutoMaskConfig", "AutoMaskConnections", "AutoMaskTask"]

from collections.abc import Mapping, Sequence
from typing import Any

from lsst.pex.config import ChoiceField
from lsst.pipe.base import PipelineTask, PipelineTaskConfig, Struct
from lsst.pipe.base import connectionTypes as cT
from lsst.utils.timer import timeMethod

from ..casa import update_mask
from ..image import RadioImage
from ..ms import MeasurementSetHandle
from .base import (
    IMAGE_DIMENSIONS,
    PsfProductConnections,
    cycle_index,
    image_input,
    image_output,
    images_for_casa,
    images_named,
    ms_selections,
    parameters_field,
    psf_product_images,
)


class AutoMaskConnections(
    PsfProductConnections,
    dimensions=IMAGE_DIMENSIONS,
    defaultTemplates={"cycle": "c1", "previous": "c0"},
):
    """Connections of AutoMaskTask for minor cycle ``cycle``."""

    previous_residual = image_input("residual_{previous}", "Residual the minor cycle will clean (term 0).")
    previous_residual_tt1 = image_input("residual_tt1_{previous}", "Residual Taylor term 1 (mtmfs).")
    previous_residual_tt2 = image_input(
        "residual_tt2_{previous}", "Residual Taylor term 2 (mtmfs, nterms=3)."
    )
    previous_model = image_input("model_{previous}", "Model so far (term 0); none before the first cycle.")
    previous_model_tt1 = image_input("model_tt1_{previous}", "Model Taylor term 1 (mtmfs).")
    previous_model_tt2 = image_input("model_tt2_{previous}", "Model Taylor term 2 (mtmfs, nterms=3).")
    previous_mask = image_input("mask_{previous}", "Mask of the previous cycle; none before the first cycle.")
    previous_summary = cT.Input(
        doc="Iteration summary of the previous cycle; none before the first cycle.",
        name="summary_{previous}",
        storageClass="StructuredDataDict",
        dimensions=IMAGE_DIMENSIONS,
    )
    mask = image_output("mask_{cycle}", "Clean mask of this cycle: 1 where the minor cycle may clean.")

    def __init__(self, *, config=None):
        super().__init__(config=config)
        if config is not None and cycle_index(config.connections.cycle) == 1:
            for name in (
                "previous_model",
                "previous_model_tt1",
                "previous_model_tt2",
                "previous_mask",
                "previous_summary",
            ):
                if name in self.inputs:
                    delattr(self, name)


class AutoMaskConfig(PipelineTaskConfig, pipelineConnections=AutoMaskConnections):
    """Configuration of AutoMaskTask."""

    parameters = parameters_field()
    implementation = ChoiceField(
        dtype=str,
        doc="Who makes the mask.",
        allowed={
            "casatools": "CASA's mask handler in a fresh tool each cycle; for auto-multithresh its state "
            "between cycles is lost, so masks can differ from tclean's from the second cycle on",
        },
        default="casatools",
    )

    def validate(self) -> None:
        super().validate()
        cycle = cycle_index(self.connections.cycle)
        if cycle < 1 or self.connections.previous != f"c{cycle - 1}":
            raise ValueError(
                f"AutoMaskTask runs in cycles c1 and later with connections.previous = c{cycle - 1}."
            )


class AutoMaskTask(PipelineTask):
    """Make the clean mask that the next minor cycle uses.

    ``usemask='user'`` gives the user's mask (or the whole image without
    one), ``'pb'`` the region where the primary beam exceeds ``pbmask``,
    ``'auto-multithresh'`` tclean's automatic mask. Once CLEAN has converged
    the previous mask is passed on.
    """

    ConfigClass = AutoMaskConfig
    _DefaultName = "autoMask"

    @timeMethod
    def run(
        self,
        *,
        visibilities: Sequence[MeasurementSetHandle],
        field: str,
        band: str,
        psf_products: Mapping[str, RadioImage],
        residual: Mapping[str, RadioImage],
        model: Mapping[str, RadioImage] | None = None,
        previous_mask: RadioImage | None = None,
        previous_summary: Mapping[str, Any] | None = None,
    ) -> Struct:
        """Make this cycle's mask.

        Parameters
        ----------
        visibilities : `~collections.abc.Sequence` [`MeasurementSetHandle`]
            MeasurementSets (only their image definition is used).
        field, band : `str`
            Field and band names.
        psf_products : `~collections.abc.Mapping` [`str`, `RadioImage`]
            MakePsfTask's images by connection name.
        residual : `~collections.abc.Mapping` [`str`, `RadioImage`]
            The residual the next minor cycle cleans, by connection name.
        model : `~collections.abc.Mapping` [`str`, `RadioImage`], optional
            The model so far.
        previous_mask : `RadioImage`, optional
            The previous cycle's mask.
        previous_summary : `~collections.abc.Mapping`, optional
            The previous cycle's iteration summary.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``mask``.
        """
        if previous_summary is not None and previous_summary["converged"]:
            return Struct(mask=previous_mask)
        images = {**psf_products, **residual, **(model or {})}
        if previous_mask is not None:
            images["mask"] = previous_mask
        mask = update_mask(
            self.config.parameters.to_tclean(),
            images_for_casa(images, self.config.parameters),
            ms_selections(visibilities, field, band),
        )
        self.log.info("Mask for %s: %d pixels.", self.config.connections.cycle, int((mask.pixels > 0).sum()))
        return Struct(mask=mask)

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        inputs = butlerQC.get(inputRefs)
        data_id = butlerQC.quantum.dataId
        previous = images_named(inputs, "previous_")
        outputs = self.run(
            visibilities=inputs["visibilities"],
            field=data_id["field"],
            band=data_id["band"],
            psf_products=psf_product_images(inputs, self.config.parameters),
            residual={name: image for name, image in previous.items() if name.startswith("residual")},
            model={name: image for name, image in previous.items() if name.startswith("model")} or None,
            previous_mask=inputs.get("previous_mask"),
            previous_summary=inputs.get("previous_summary"),
        )
        butlerQC.put(outputs, outputRefs)
