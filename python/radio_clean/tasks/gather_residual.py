"""GatherResidualTask: sum the observations' shares of a residual and normalize it."""

from __future__ import annotations

__all__ = ["GatherResidualConfig", "GatherResidualConnections", "GatherResidualTask"]

from collections.abc import Mapping, Sequence

import numpy as np
from lsst.pipe.base import PipelineTask, PipelineTaskConfig, Struct
from lsst.pipe.base import connectionTypes as cT
from lsst.utils.timer import timeMethod

from ..casa import normalize_residual
from ..image import RadioImage
from ..ms import MeasurementSetHandle
from .connections import IMAGE_DIMENSIONS, PsfProductConnections, image_output, parameters_field
from .inputs import images_for_casa, images_from_casa, ms_selections, psf_product_images
from .naming import PARTIAL_PREFIX, term_connection_names


def _partial_input(term: str, doc: str):
    return cT.Input(
        doc=doc,
        name=f"{PARTIAL_PREFIX}residual{term}_{{cycle}}",
        storageClass="RadioImage",
        dimensions=(*IMAGE_DIMENSIONS, "observation"),
        multiple=True,
    )


class GatherResidualConnections(
    PsfProductConnections, dimensions=IMAGE_DIMENSIONS, defaultTemplates={"cycle": "c0"}
):
    """Connections of GatherResidualTask: every observation's share in, one residual out."""

    partial_residual = _partial_input("", "Each observation's share of the residual (term 0), unnormalized.")
    partial_residual_tt1 = _partial_input(
        "_tt1", "Each observation's share of residual Taylor term 1 (mtmfs)."
    )
    partial_residual_tt2 = _partial_input(
        "_tt2", "Each observation's share of residual Taylor term 2 (mtmfs)."
    )
    residual = image_output("residual_{cycle}", "Residual image after this cycle (Taylor term 0 for mtmfs).")
    residual_tt1 = image_output("residual_tt1_{cycle}", "Residual Taylor term 1 (mtmfs).")
    residual_tt2 = image_output("residual_tt2_{cycle}", "Residual Taylor term 2 (mtmfs, nterms=3).")


class GatherResidualConfig(PipelineTaskConfig, pipelineConnections=GatherResidualConnections):
    """Configuration of GatherResidualTask."""

    parameters = parameters_field()


class GatherResidualTask(PipelineTask):
    """Sum the residuals that each observation's major cycle gridded, and normalize the sum.

    The per-observation major cycles weigh their visibilities with the
    weight density of all observations (from MakePsfTask) and leave their
    share undivided; dividing the sum by the sum of weights of all
    observations gives the residual of all the data imaged together, as
    CASA's parallel continuum imaging gathers the residuals of its nodes.
    """

    ConfigClass = GatherResidualConfig
    _DefaultName = "gatherResidual"

    @timeMethod
    def run(
        self,
        *,
        visibilities: Sequence[MeasurementSetHandle],
        field: str,
        band: str,
        psf_products: Mapping[str, RadioImage],
        partial_residuals: Mapping[str, Sequence[RadioImage]],
    ) -> Struct:
        """Gather and normalize one cycle's residual.

        Parameters
        ----------
        visibilities : `~collections.abc.Sequence` [`MeasurementSetHandle`]
            MeasurementSets (only their image definition is used).
        field, band : `str`
            Field and band names.
        psf_products : `~collections.abc.Mapping` [`str`, `RadioImage`]
            MakePsfTask's images (of all observations) by connection name.
        partial_residuals : `~collections.abc.Mapping` [`str`, `~collections.abc.Sequence` [`RadioImage`]]
            Each observation's share, by residual connection name
            (``residual``, ``residual_tt1``...).

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``residual`` (and ``residual_tt1``... for mtmfs).
        """
        parameters = self.config.parameters
        gathered = {}
        for name, shares in partial_residuals.items():
            total = np.sum([share.pixels for share in shares], axis=0, dtype=np.float32)
            # The shares' coordinates are those of the PSF; take the PSF's for the sum.
            gathered[name] = shares[0].replace(pixels=total, wcs=psf_products["psf"].wcs, provenance={})
        images = images_for_casa({**psf_products, **gathered}, parameters)
        residuals = images_from_casa(
            normalize_residual(
                ms_selections(visibilities, field, band, parameters.spw), parameters.to_tclean(), images
            )
        )
        self.log.info(
            "Gathered %d observations' residuals; peak %.6g.",
            len(partial_residuals["residual"]),
            float(np.abs(residuals["residual"].pixels).max()),
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
            psf_products=psf_product_images(inputs, self.config.parameters),
            partial_residuals={
                name.removeprefix(PARTIAL_PREFIX): shares
                for name, shares in inputs.items()
                if name.startswith(PARTIAL_PREFIX)
            },
        )
        butlerQC.put(outputs, outputRefs)
