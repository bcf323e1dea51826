"""Test support: run ``radio-clean image``'s code path and read everything back; snapshots of a repository."""

from __future__ import annotations

__all__ = ["registry_snapshot", "run_clean", "tree_checksums"]

import hashlib
import os

from lsst.daf.butler import Butler

from radio_clean.export import last_minor_cycle
from radio_clean.tasks.naming import CHUNK_DATASET_PREFIX


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


def run_clean(
    ms_paths: list[str],
    *,
    parameters: dict,
    directory: str | os.PathLike,
    automask_implementation: str = "numpy",
    jobs: int = 1,
) -> dict[str, object]:
    """Image MeasurementSets through ``radio-clean image``'s own code path and read everything back.

    The repository, ingest, pipeline, the CLEAN loop and its executor are
    those a user runs; nothing is called privately.

    Parameters
    ----------
    ms_paths : `list` [`str`]
        MeasurementSets of one field and band.
    parameters : `dict`
        tclean parameters (config values, e.g. ``{"cell": ["1arcsec"]}``).
    directory : `str` or `os.PathLike`
        Where the repository (``repo``) and exported files (``out``) go.
    automask_implementation : `str`, optional
        AutoMaskTask's ``implementation``.
    jobs : `int`, optional
        ``--jobs``.

    Returns
    -------
    products : `dict`
        Every image of the chain by dataset type name (``psf``,
        ``residual_c3``, ``image``...; cube chunks without their ``cube_``
        prefix), the final ``residual``, ``model`` (and their ``_tt1``...),
        ``mask`` (the one tclean leaves), ``summary`` (the final iteration
        summary), ``cycles`` (the cycle that stopped CLEAN), ``run`` (the
        `radio_clean.imaging.ImagingRun`) and ``repo``.
    """
    from radio_clean.imaging import image_measurement_sets
    from radio_clean.parameters import CleanParametersConfig

    config = CleanParametersConfig()
    for name, value in parameters.items():
        setattr(config, name, value)
    config.validate()
    repo = os.path.join(directory, "repo")
    run = image_measurement_sets(
        ms_paths,
        repo=repo,
        export_dir=os.path.join(directory, "out"),
        parameters=config,
        jobs=jobs,
        task_configs=[f"autoMask:implementation={automask_implementation}"],
    )
    products: dict[str, object] = {"run": run, "repo": repo}
    with Butler.from_config(repo, collections=run.collection) as butler:
        for ref in butler.registry.queryDatasets(..., collections=run.collection, findFirst=True):
            name = ref.datasetType.name.removeprefix(CHUNK_DATASET_PREFIX)
            if ref.datasetType.storageClass_name == "RadioImage" or name.startswith("summary_c"):
                if name in products:
                    raise ValueError(f"{name} of more than one chain or chunk in {run.collection}.")
                products[name] = butler.get(ref)
    summary = products[f"summary_c{max(_cycles_of(products, 'summary'))}"]
    final = int(summary["cycle"])
    products.update(summary=summary, cycles=final, mask=products[f"mask_c{last_minor_cycle(summary)}"])
    for name in [key for key in products if key.startswith(("residual", "model"))]:
        base, _, cycle = name.rpartition("_c")
        if int(cycle) == (final - 1 if base.startswith("residual") else final):
            products[base] = products[name]
    return products


def _cycles_of(products: dict[str, object], base: str) -> list[int]:
    return [int(name.rpartition("_c")[2]) for name in products if name.startswith(f"{base}_c")]
