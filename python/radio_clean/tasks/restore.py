"""RestoreTask: restored and primary-beam corrected images, quick-look figures."""

from __future__ import annotations

__all__ = ["RestoreConfig", "RestoreConnections", "RestoreTask"]

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from lsst.pipe.base import PipelineTask, PipelineTaskConfig, Struct
from lsst.pipe.base import connectionTypes as cT
from lsst.utils.timer import timeMethod

from ..casa import restore_images
from ..image import RadioImage
from ..ms import MeasurementSetHandle
from ..quicklook import IMPORTED_WHEN_DRAWING, convergence_figure, image_figure
from .connections import (
    IMAGE_DIMENSIONS,
    PsfProductConnections,
    channel_chunks_field,
    image_input,
    image_output,
    parameters_field,
)
from .inputs import (
    images_for_casa,
    images_from_casa,
    images_of,
    ms_selections,
    psf_product_images,
    quantum_channels,
)
from .naming import term_connection_names


class RestoreConnections(
    PsfProductConnections, dimensions=IMAGE_DIMENSIONS, defaultTemplates={"previous": "c0", "cycle": "c1"}
):
    """Connections of RestoreTask.

    ``previous`` is the last major cycle (the final residual), ``cycle`` the
    minor cycle whose convergence check stopped CLEAN (the final model and
    summary).
    """

    residual = image_input("residual_{previous}", "Final residual (Taylor term 0 for mtmfs).")
    residual_tt1 = image_input("residual_tt1_{previous}", "Final residual Taylor term 1 (mtmfs).")
    residual_tt2 = image_input("residual_tt2_{previous}", "Final residual Taylor term 2 (mtmfs, nterms=3).")
    model = image_input("model_{cycle}", "Final model (Taylor term 0 for mtmfs), Jy/pixel.")
    model_tt1 = image_input("model_tt1_{cycle}", "Final model Taylor term 1 (mtmfs).")
    model_tt2 = image_input("model_tt2_{cycle}", "Final model Taylor term 2 (mtmfs, nterms=3).")
    summary = cT.Input(
        doc="Iteration summary of the cycle that stopped CLEAN (stop code and reason).",
        name="summary_{cycle}",
        storageClass="StructuredDataDict",
        dimensions=IMAGE_DIMENSIONS,
    )

    image = image_output("image", "Restored image: model x beam + residual (Taylor term 0 for mtmfs).")
    image_tt1 = image_output("image_tt1", "Restored Taylor term 1 (mtmfs).")
    image_tt2 = image_output("image_tt2", "Restored Taylor term 2 (mtmfs, nterms=3).")
    image_pbcor = image_output("image_pbcor", "Restored image divided by the primary beam (pbcor=True).")
    alpha = image_output("alpha", "Spectral index from the Taylor terms (mtmfs, nterms > 1).")
    alpha_error = image_output("alpha_error", "Spectral index error (mtmfs, nterms > 1).")
    image_png = cT.Output(
        doc="Quick-look PNG of the restored image with the beam and a colour bar.",
        name="image_png",
        storageClass="Plot",
        dimensions=IMAGE_DIMENSIONS,
    )
    convergence_png = cT.Output(
        doc="Quick-look PNG of the peak residual per cycle.",
        name="convergence_png",
        storageClass="Plot",
        dimensions=IMAGE_DIMENSIONS,
    )
    clean_summary = cT.Output(
        doc="Final iteration summary (iterdone, nmajordone, stop code and reason, peak residual per cycle).",
        name="clean_summary",
        storageClass="StructuredDataDict",
        dimensions=IMAGE_DIMENSIONS,
    )

    def __init__(self, *, config=None):
        super().__init__(config=config)
        if config is None:
            return
        if not config.parameters.pbcor:
            del self.image_pbcor
        if not config.parameters.makes_spectral_index:
            del self.alpha
            del self.alpha_error


class RestoreConfig(PipelineTaskConfig, pipelineConnections=RestoreConnections):
    """Configuration of RestoreTask."""

    parameters = parameters_field()
    channel_chunks = channel_chunks_field()


class RestoreTask(PipelineTask):
    """Restore the final model with the restoring beam and add the final residual.

    The beam is the one fitted to the PSF, or ``restoringbeam`` if set. With
    ``pbcor`` the restored image is also divided by the primary beam; for
    mtmfs the Taylor-term images give the spectral index and its error.
    """

    ConfigClass = RestoreConfig
    _DefaultName = "restore"

    @staticmethod
    def modules_imported_when_run(config: RestoreConfig) -> tuple[str, ...]:
        """Modules `run` imports on first use with ``config`` (the CLEAN loop imports them ahead)."""
        return IMPORTED_WHEN_DRAWING

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
        model: Mapping[str, RadioImage],
        summary: Mapping[str, Any],
    ) -> Struct:
        """Make the restored images and quick-look figures.

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
        residual, model : `~collections.abc.Mapping` [`str`, `RadioImage`]
            Final residual and model by connection name.
        summary : `~collections.abc.Mapping`
            Final iteration summary.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``image`` (and Taylor terms), ``image_pbcor``, ``alpha``,
            ``alpha_error`` as configured, ``image_png``,
            ``convergence_png`` and ``clean_summary``.
        """
        parameters = self.config.parameters
        if not summary["stopped"]:
            raise RuntimeError(
                f"The summary of cycle {summary.get('cycle', 0)} of {field} in {band} says CLEAN goes on; "
                "restore runs after the cycle whose summary says it stopped."
            )
        images = images_for_casa({**psf_products, **residual, **model}, parameters)
        selections = ms_selections(visibilities, field, band, self.config.parameters.spw)
        restored = images_from_casa(restore_images(parameters.to_tclean(channels), images, selections))
        wanted = term_connection_names("image", parameters.term_count)
        wanted += ["image_pbcor"] if parameters.pbcor else []
        wanted += ["alpha", "alpha_error"] if parameters.makes_spectral_index else []
        outputs = {name: restored[name] for name in wanted}
        title = f"{field} {band}"
        final_residual = residual[term_connection_names("residual", parameters.term_count)[0]].pixels
        clean_summary = {key: value for key, value in summary.items() if key != "history"}
        cycles = summary.get("history", {}).get("cycles", [])
        final_peak = float(np.nanmax(np.abs(final_residual), initial=0.0))
        clean_summary |= {
            # CASA's peak over the whole image (not only the mask) before each minor cycle, then
            # that of the final residual: the peak after every major cycle.
            "peak_residual_after_major_cycle": [
                float(cycle["inits"][-1]["peakresidualnomask"]) for cycle in cycles
            ]
            + [final_peak],
            "cycle_thresholds": [
                float(cycle.get("controls", {}).get("cyclethreshold", np.nan)) for cycle in cycles
            ],
        }
        self.metadata["final_peak_residual"] = final_peak
        self.metadata["iterdone"] = int(summary["iterdone"])
        self.metadata["nmajordone"] = int(summary["nmajordone"])
        self.metadata["stopcode"] = int(summary["stopcode"])
        return Struct(
            **outputs,
            image_png=image_figure(restored["image"], title=f"{title} restored"),
            convergence_png=convergence_figure(clean_summary, title=title),
            clean_summary=clean_summary,
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
            residual=images_of(inputs, "residual"),
            model=images_of(inputs, "model"),
            summary=inputs["summary"],
        )
        butlerQC.put(outputs, outputRefs)
