"""AutoMaskTask: the clean mask for each minor cycle."""

from __future__ import annotations

__all__ = ["AutoMaskConfig", "AutoMaskConnections", "AutoMaskTask"]

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from lsst.pex.config import ChoiceField
from lsst.pipe.base import PipelineTask, PipelineTaskConfig, Struct
from lsst.pipe.base import connectionTypes as cT
from lsst.utils.timer import timeMethod

from .. import automask
from ..casa import common_beam, psf_sidelobe_level, update_mask
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
    ms_selections,
    previous_cycle_inputs,
    psf_product_images,
    quantum_channels,
)
from .naming import cycle_index

# tclean parameters of auto-multithresh (the same names in CleanParametersConfig).
_AUTOMASK_PARAMETERS = tuple(field.name for field in dataclasses.fields(automask.AutoMaskParameters))


class AutoMaskConnections(
    PreviousCycleConnections,
    dimensions=IMAGE_DIMENSIONS,
    defaultTemplates={"cycle": "c1", "previous": "c0"},
):
    """Connections of AutoMaskTask for minor cycle ``cycle``."""

    previous_mask = image_input("mask_{previous}", "Mask of the previous cycle; none before the first cycle.")
    previous_state = cT.Input(
        doc="auto-multithresh state after the previous cycle (positive mask, stopped channels).",
        name="automask_state_{previous}",
        storageClass="AutoMaskState",
        dimensions=IMAGE_DIMENSIONS,
    )
    mask = image_output("mask_{cycle}", "Clean mask of this cycle: 1 where the minor cycle may clean.")
    state = cT.Output(
        doc="auto-multithresh state after this cycle, for the next one.",
        name="automask_state_{cycle}",
        storageClass="AutoMaskState",
        dimensions=IMAGE_DIMENSIONS,
    )

    def __init__(self, *, config=None):
        super().__init__(config=config)
        if config is None:
            return
        if not config.uses_numpy_automask:
            del self.state
            if "previous_state" in self.inputs:
                del self.previous_state


class AutoMaskConfig(PipelineTaskConfig, pipelineConnections=AutoMaskConnections):
    """Configuration of AutoMaskTask."""

    parameters = parameters_field()
    channel_chunks = channel_chunks_field()
    implementation = ChoiceField(
        dtype=str,
        optional=False,
        doc="Who makes auto-multithresh masks (user and pb masks always come from CASA's mask handler).",
        allowed={
            "numpy": "radio_clean.automask, with its state between cycles carried as a dataset",
            "casatools": "CASA's mask handler in a fresh tool each cycle; CASA keeps auto-multithresh state "
            "in memory between cycles, so from the second cycle on its masks can differ from tclean's",
        },
        default="numpy",
    )

    @property
    def uses_numpy_automask(self) -> bool:
        """Whether masks come from `radio_clean.automask`."""
        return self.parameters.usemask == "auto-multithresh" and self.implementation == "numpy"

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
    ``'auto-multithresh'`` tclean's automatic mask, by default from
    `radio_clean.automask` with its state between cycles carried as the
    ``automask_state`` datasets. User and pb masks are made once, in the
    first cycle, as tclean makes them; later cycles pass the previous mask
    on.
    """

    ConfigClass = AutoMaskConfig
    _DefaultName = "autoMask"

    @staticmethod
    def modules_imported_when_run(config: AutoMaskConfig) -> tuple[str, ...]:
        """Modules `run` imports on first use with ``config`` (the CLEAN loop imports them ahead)."""
        return automask.IMPORTED_WHEN_RUN if config.uses_numpy_automask else ()

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
        model: Mapping[str, RadioImage] | None = None,
        previous_mask: RadioImage | None = None,
        previous_summary: Mapping[str, Any] | None = None,
        previous_state: automask.AutoMaskState | None = None,
    ) -> Struct:
        """Make this cycle's mask.

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
            The residual the next minor cycle cleans, by connection name.
        model : `~collections.abc.Mapping` [`str`, `RadioImage`], optional
            The model so far.
        previous_mask : `RadioImage`, optional
            The previous cycle's mask.
        previous_summary : `~collections.abc.Mapping`, optional
            The previous cycle's iteration summary.
        previous_state : `radio_clean.automask.AutoMaskState`, optional
            auto-multithresh state after the previous cycle.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``mask`` and, for the numpy auto-multithresh, ``state``.
        """
        numpy_automask = self.config.uses_numpy_automask
        if previous_mask is not None and self.config.parameters.usemask in ("user", "pb"):
            return Struct(mask=previous_mask)
        selections = ms_selections(visibilities, field, band, self.config.parameters.spw)
        parameters = self.config.parameters
        tclean_parameters = parameters.to_tclean(channels)
        if numpy_automask:
            mask, state = self._auto_multithresh(
                tclean_parameters, psf_products, residual, previous_summary, previous_state, selections
            )
            result = Struct(mask=mask, state=state)
        else:
            images = {**psf_products, **residual, **(model or {})}
            if previous_mask is not None:
                images["mask"] = previous_mask
            result = Struct(
                mask=update_mask(tclean_parameters, images_for_casa(images, parameters), selections)
            )
        self.log.info(
            "Mask for %s: %d pixels.", self.config.connections.cycle, int((result.mask.pixels > 0).sum())
        )
        return result

    def _auto_multithresh(
        self, tclean_parameters, psf_products, residual, previous_summary, previous_state, selections
    ):
        parameters = self.config.parameters
        residual_image = residual["residual"]
        psf = psf_products["psf"]
        cell_arcsec = abs(float(psf.wcs.wcs.cdelt[1])) * 3600.0
        # For cubes CASA masks every channel with the common beam of all channels.
        beam = common_beam(psf)
        sidelobe_level = psf_sidelobe_level(
            tclean_parameters, images_for_casa({**psf_products, **residual}, parameters), selections
        )
        mask, state = automask.auto_multithresh(
            residual_image.pixels,
            psf_sidelobe_level=sidelobe_level,
            beam=automask.PixelBeam.from_arcsec(
                beam.major_arcsec, beam.minor_arcsec, beam.pa_deg, cell_arcsec
            ),
            pb=psf_products["pb"].pixels,
            pblimit=parameters.pblimit,
            state=previous_state,
            iteration_done=int(previous_summary["iterdone"]) if previous_summary else 0,
            # What CASA's deconvolver was told with the last minor cycle's controls.
            threshold_reached=bool(previous_summary and previous_summary.get("thresholdreached", False)),
            params=automask.AutoMaskParameters(
                **{name: getattr(parameters, name) for name in _AUTOMASK_PARAMETERS}
            ),
        )
        mask_image = residual_image.replace(
            pixels=mask.astype(np.float32), brightness_unit="", restoring_beam=None, provenance={}
        )
        return mask_image, state

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        inputs = butlerQC.get(inputRefs)
        data_id = butlerQC.quantum.dataId
        outputs = self.run(
            visibilities=inputs["visibilities"],
            field=data_id["field"],
            band=data_id["band"],
            channels=quantum_channels(butlerQC),
            psf_products=psf_product_images(inputs, self.config.parameters),
            previous_mask=inputs.get("previous_mask"),
            previous_state=inputs.get("previous_state"),
            **previous_cycle_inputs(inputs),
        )
        butlerQC.put(outputs, outputRefs)
