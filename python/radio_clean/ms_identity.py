"""What a MeasurementSet holds, as one digest: the SHA-256 of every file of its tables.

An MS is identified by its content, not by its path or its metadata alone:
a recalibrated (new CORRECTED_DATA), reflagged (FLAG, FLAG_ROW) or
reweighted (WEIGHT, WEIGHT_SPECTRUM, SIGMA) MS must not be taken for the one
ingested before. casacore keeps each column in storage-manager files
(``table.f<N>``, ``table.f<N>_TSM<K>``) next to the table description
(``table.dat``), and the subtables (FIELD, SPECTRAL_WINDOW, ANTENNA, ...)
the same way, so hashing every file of the MS directory covers everything
imaging reads. Only ``table.lock`` files are left out: casacore writes them
whenever a table is opened, even read-only.

Hashing reads the whole MS (SHA-256 runs at about 1.2 GB/s here, so the disk
usually sets the pace). A per-file cache keyed by the file's size, times and
inode makes the second look at an unchanged MS cost only a ``stat`` per file:
casacore rewrites a storage-manager file when it changes a column, which
changes its modification and status-change times, and a status-change time
cannot be set back by a user.
"""

from __future__ import annotations

__all__ = ["DigestCache", "ms_content_digest"]

import hashlib
import json
import logging
import os
import tempfile

_log = logging.getLogger(__name__)

_LOCK_FILE = "table.lock"
_BLOCK_BYTES = 8 << 20


class DigestCache:
    """Digests of files already hashed, kept in a JSON file, valid while a file's stat is unchanged.

    Parameters
    ----------
    path : `str` or `None`
        JSON file to read and write; `None` keeps the cache in memory only.
        A cache that cannot be read or written is ignored (the digests are
        then computed again), never an error.
    """

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self._entries: dict[str, list] = {}
        self._changed = False
        if path is not None:
            try:
                with open(path) as stream:
                    loaded = json.load(stream)
                if isinstance(loaded, dict):
                    self._entries = loaded
            except (OSError, ValueError):
                pass

    @staticmethod
    def _signature(stat: os.stat_result) -> list:
        return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev]

    def file_digest(self, path: str) -> str:
        """Return the SHA-256 of the file ``path``, from the cache if its stat is unchanged."""
        signature = self._signature(os.stat(path))
        entry = self._entries.get(path)
        if entry is not None and entry[:-1] == signature:
            return entry[-1]
        digest = hashlib.sha256()
        with open(path, "rb") as stream:
            while block := stream.read(_BLOCK_BYTES):
                digest.update(block)
        # The file may have changed while it was read; cache only what was stable throughout.
        if self._signature(os.stat(path)) == signature:
            self._entries[path] = [*signature, digest.hexdigest()]
            self._changed = True
        return digest.hexdigest()

    def save(self) -> None:
        """Write the cache file (atomically) if anything was added."""
        if self.path is None or not self._changed:
            return
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            handle, partial = tempfile.mkstemp(prefix=".ms-digests-", dir=directory)
            with os.fdopen(handle, "w") as stream:
                json.dump(self._entries, stream)
            os.replace(partial, self.path)
            self._changed = False
        except OSError as err:
            _log.debug("Could not write the MS digest cache %s: %s", self.path, err)


def ms_content_digest(path: str, cache: DigestCache | None = None) -> str:
    """Return the SHA-256 over the names and contents of every file of the MS ``path``.

    Parameters
    ----------
    path : `str`
        MeasurementSet directory (read-only).
    cache : `DigestCache`, optional
        Digests of files hashed before.

    Returns
    -------
    digest : `str`
        Hexadecimal SHA-256; equal for equal content wherever the MS lives.
    """
    cache = cache if cache is not None else DigestCache()
    path = os.path.abspath(path)
    digest = hashlib.sha256()
    for root, directories, names in os.walk(path, followlinks=True):
        directories.sort()
        for name in sorted(names):
            if name == _LOCK_FILE:
                continue
            full = os.path.join(root, name)
            relative = os.path.relpath(full, path)
            digest.update(f"{relative}\0{cache.file_digest(full)}\n".encode())
    return digest.hexdigest()
