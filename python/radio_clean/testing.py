"""Helpers for tests of radio_clean and of code built on it."""

from __future__ import annotations

__all__ = ["registry_snapshot", "tree_checksums"]

import hashlib
import os

from lsst.daf.butler import Butler


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
