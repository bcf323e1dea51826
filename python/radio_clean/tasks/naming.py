"""Names the CLEAN tasks share: dataset and connection names, Taylor terms, CASA image kinds, cycles."""

from __future__ import annotations

__all__ = [
    "CHUNK_DATASET_PREFIX",
    "MAX_PSF_TERMS",
    "PARTIAL_PREFIX",
    "casa_kind",
    "connection_name",
    "cycle_index",
    "psf_connection_names",
    "psf_product_names",
    "term_connection_names",
]

from ..parameters import MAX_TAYLOR_TERMS, CleanParametersConfig

CHUNK_DATASET_PREFIX = "cube_"
"""Dataset types of channel chunks are named ``cube_psf``, ``cube_residual_c3``..."""


PARTIAL_PREFIX = "partial_"
"""A per-observation share of a residual is named ``partial_residual_c3``..."""


MAX_PSF_TERMS = 2 * MAX_TAYLOR_TERMS - 1
"""mtmfs makes 2 nterms - 1 PSF (and sum-of-weight) Taylor terms."""


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


def cycle_index(label: str) -> int:
    """Number of a cycle template value: ``c3`` -> 3."""
    if not (label.startswith("c") and label[1:].isdigit()):
        raise ValueError(f"Cycle template {label!r} is not of the form c<N> (c0, c1, ...).")
    return int(label[1:])


def psf_product_names(parameters) -> list[str]:
    """Connection names of what MakePsfTask makes with these parameters."""
    names = ["pb"] + psf_connection_names("psf", parameters) + psf_connection_names("sumwt", parameters)
    if parameters.gridder == "mosaic":
        names += psf_connection_names("weight", parameters)
    return names
