"""Helpers for tests of radio_clean and of code built on it."""

from __future__ import annotations

__all__ = ["registry_snapshot", "run_clean_tasks", "tree_checksums"]

import hashlib
import os

from lsst.daf.butler import Butler

from .export import last_minor_cycle


def tree_checksums(path: str | os.PathLike) -> dict[str, str]:
    """Return the SHA-256 of every file under ``path``, keyed by relative path."""
    digests = {}
    for root, _, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            with open(full, "rb") as stream:
                digests[os.path.relpath(full, path)] = hashlib.sha256(stream.read()).hexdigest()
    return digests


def registry_snapshot(repo: str) -> dict[str, object]:
    """Everything a test needs to tell whether a repository changed.

    Dimension records of every element, collections, dataset types and
    datasets (with their URIs), as plain sortable values.
    """
    with Butler.from_config(repo) as butler:
        registry = butler.registry
        snapshot: dict[str, object] = {}
        for element in butler.dimensions.getStaticElements():
            if element.has_own_table:
                records = registry.queryDimensionRecords(element.name)
                snapshot[element.name] = sorted(str(record.toDict()) for record in records)
        snapshot["collections"] = sorted(registry.queryCollections())
        snapshot["dataset_types"] = sorted(t.name for t in registry.queryDatasetTypes())
        refs = registry.queryDatasets(..., collections=...) if snapshot["collections"] else []
        snapshot["datasets"] = sorted(f"{ref} {butler.getURI(ref)}" for ref in refs)
        snapshot["files"] = sorted(
            os.path.relpath(os.path.join(root, name), repo)
            for root, _, names in os.walk(repo)
            for name in names
            if not name.startswith("gen3.sqlite3")
        )
    return snapshot


def run_clean_tasks(
    visibilities: list,
    *,
    field: str,
    band: str,
    parameters: dict,
    max_cycles: int = 20,
    automask_implementation: str = "numpy",
) -> dict[str, object]:
    """Run the CLEAN tasks' ``run`` methods in pipeline order, without a Butler.

    The same chain of steps a quantum graph of ContinuumImaging.yaml runs,
    for tests that compare many parameter sets with tclean quickly.

    Parameters
    ----------
    visibilities : `list` [`radio_clean.ms.MeasurementSetHandle`]
        MeasurementSets.
    field, band : `str`
        Data ID values.
    parameters : `dict`
        tclean parameters (config values, e.g. ``{"cell": ["1arcsec"]}``).
    max_cycles : `int`, optional
        Cycle ceiling.
    automask_implementation : `str`, optional
        AutoMaskTask's ``implementation``.

    Returns
    -------
    products : `dict`
        Every image by dataset type name (``psf``, ``residual_c3``,
        ``image``...), plus ``summary`` (the final iteration summary) and
        ``cycles`` (the last cycle run).
    """
    from .tasks.auto_mask import AutoMaskConfig, AutoMaskTask
    from .tasks.deconvolve import DeconvolveConfig, DeconvolveTask
    from .tasks.major_cycle import MajorCycleConfig, MajorCycleTask
    from .tasks.make_psf import MakePsfConfig, MakePsfTask
    from .tasks.restore import RestoreConfig, RestoreTask

    def configured(config_class, **templates):
        config = config_class()
        for name, value in parameters.items():
            setattr(config.parameters, name, value)
        for name, value in templates.items():
            setattr(config.connections, name, value)
        config.validate()
        return config

    common = dict(visibilities=visibilities, field=field, band=band)
    psf_products = MakePsfTask(config=configured(MakePsfConfig)).run(**common).getDict()
    products: dict[str, object] = dict(psf_products)
    residual = (
        MajorCycleTask(config=configured(MajorCycleConfig, cycle="c0"))
        .run(**common, psf_products=psf_products)
        .getDict()
    )
    model, mask, summary, state = None, None, None, None
    cycle = 0
    for cycle in range(1, max_cycles + 1):
        templates = {"cycle": f"c{cycle}", "previous": f"c{cycle - 1}"}
        mask_config = configured(AutoMaskConfig, **templates)
        mask_config.implementation = automask_implementation
        masked = AutoMaskTask(config=mask_config).run(
            **common,
            psf_products=psf_products,
            residual=residual,
            model=model,
            previous_mask=mask,
            previous_summary=summary,
            previous_state=state,
        )
        mask, state = masked.mask, getattr(masked, "state", None)
        deconvolved = (
            DeconvolveTask(config=configured(DeconvolveConfig, **templates))
            .run(
                **common,
                psf_products=psf_products,
                residual=residual,
                mask=mask,
                model=model,
                previous_summary=summary,
            )
            .getDict()
        )
        summary = deconvolved.pop("summary")
        model = deconvolved
        residual = (
            MajorCycleTask(config=configured(MajorCycleConfig, **templates))
            .run(
                **common, psf_products=psf_products, model=model, summary=summary, previous_residual=residual
            )
            .getDict()
        )
        products.update({f"{name}_c{cycle}": image for name, image in {**model, **residual}.items()})
        products[f"mask_c{cycle}"] = mask
        if summary["converged"]:
            break
    restored = RestoreTask(config=configured(RestoreConfig, previous=f"c{cycle}")).run(
        **common, psf_products=psf_products, residual=residual, model=model, summary=summary
    )
    products.update({name: value for name, value in restored.getDict().items() if not name.endswith("_png")})
    products.update(
        {
            "summary": summary,
            "cycles": cycle,
            "residual": residual["residual"],
            "model": model["model"],
            "mask": products[f"mask_c{last_minor_cycle(summary)}"],
        }
    )
    return products
