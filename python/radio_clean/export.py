"""Export CLEAN products from a repository as FITS files with CASA's names."""

from __future__ import annotations

__all__ = ["export_products", "exported_names", "last_minor_cycle"]

import json
import os
import shutil
from typing import Any

import numpy as np
from lsst.daf.butler import Butler

from .parameters import CleanParametersConfig


def last_minor_cycle(summary: dict[str, Any]) -> int:
    """Return the cycle whose minor cycle ran last; its mask is the one tclean leaves on disk.

    When tclean stops it puts back the mask the last minor cycle used, not one
    made after it.
    """
    return max(1, int(summary["nmajordone"]) - 1)


def exported_names(parameters: CleanParametersConfig, final_cycle: int, mask_cycle: int) -> dict[str, str]:
    """Map FITS file names (as CASA's exportfits users know them) to dataset type names.

    ``mask_cycle`` is the cycle of the last minor cycle: when tclean stops it
    leaves the mask that minor cycle used, not one made after it.
    """
    final = f"c{final_cycle}"
    if parameters.deconvolver != "mtmfs":
        names = {
            "image.fits": "image",
            "residual.fits": f"residual_{final}",
            "model.fits": f"model_{final}",
            "psf.fits": "psf",
            "pb.fits": "pb",
            "mask.fits": f"mask_c{mask_cycle}",
            "sumwt.fits": "sumwt",
        }
        if parameters.pbcor:
            names["image.pbcor.fits"] = "image_pbcor"
        return names
    names = {
        "pb.tt0.fits": "pb",
        "mask.fits": f"mask_c{mask_cycle}",
        "alpha.fits": "alpha",
        "alpha.error.fits": "alpha_error",
    }
    for term in range(parameters.nterms):
        suffix = f"_tt{term}" if term else ""
        names[f"image.tt{term}.fits"] = f"image{suffix}"
        names[f"residual.tt{term}.fits"] = f"residual{suffix}_{final}"
        names[f"model.tt{term}.fits"] = f"model{suffix}_{final}"
    for term in range(2 * parameters.nterms - 1):
        suffix = f"_tt{term}" if term else ""
        names[f"psf.tt{term}.fits"] = f"psf{suffix}"
        names[f"sumwt.tt{term}.fits"] = f"sumwt{suffix}"
    if parameters.pbcor:
        names["image.tt0.pbcor.fits"] = "image_pbcor"
    return names


def export_products(
    butler: Butler, data_id: dict[str, str], parameters: CleanParametersConfig, directory: str
) -> dict[str, Any]:
    """Write one field/band's images, quick looks and ``summary.json`` into ``directory``.

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        Butler whose default collections hold the pipeline's outputs.
    data_id : `dict`
        ``instrument``, ``field`` and ``band``.
    parameters : `CleanParametersConfig`
        The parameters the pipeline ran with (they decide which images exist).
    directory : `str`
        Output directory (created if needed).

    Returns
    -------
    summary : `dict`
        What ``summary.json`` holds: iterdone, nmajordone, stopcode, stop
        reason, the peak residual after each major cycle, and the files.
    """
    os.makedirs(directory, exist_ok=True)
    clean_summary = butler.get("clean_summary", data_id)
    final_cycle = int(clean_summary["cycle"])
    files = []
    mask_cycle = min(final_cycle, last_minor_cycle(clean_summary))
    for file_name, dataset_type in exported_names(parameters, final_cycle, mask_cycle).items():
        butler.get(dataset_type, data_id).to_fits(os.path.join(directory, file_name), overwrite=True)
        files.append(file_name)
    for file_name, dataset_type in (("image.png", "image_png"), ("convergence.png", "convergence_png")):
        shutil.copyfile(butler.getURI(dataset_type, data_id).ospath, os.path.join(directory, file_name))
        files.append(file_name)
    # Cycles after convergence pass the residual on unchanged; report real major cycles only.
    peaks = [
        float(np.abs(butler.get(f"residual_c{cycle}", data_id).pixels).max())
        for cycle in range(min(int(clean_summary["nmajordone"]), final_cycle + 1))
    ]
    summary = {
        "field": data_id["field"],
        "band": data_id["band"],
        "iterdone": int(clean_summary["iterdone"]),
        "nmajordone": int(clean_summary["nmajordone"]),
        "stopcode": int(clean_summary["stopcode"]),
        "stop_reason": clean_summary["stop_reason"],
        "converged": bool(clean_summary["converged"]),
        "peak_residual_after_major_cycle": peaks,
        "files": files,
    }
    with open(os.path.join(directory, "summary.json"), "w") as stream:
        json.dump(summary, stream, indent=2)
    return summary
