"""Fix `zipfile` for reading some quanta of a quantum graph (``.qg``) file.

Applied by the commands of radio_clean's bps jobs, `radio_clean.pipetask_command`
and `radio_clean.butler_command`; importing radio_clean does not apply it.

A ``.qg`` file is a zip archive; reading the quanta of some IDs (``pipetask
run-qbb --qgraph-node-id``, as every bps job does) seeks inside its
``quantum_datasets.mb`` member while another member (``quanta.addr``) of the
same archive is read between the seeks. CPython's ``zipfile`` (3.12.1 here;
the code is unchanged in 3.13.0) seeks a stored member forward relative to the
position of the shared file object, which the other member's reads have
moved, not relative to the member's own position: the reads that follow
land past the data, and the middleware stops with ``EOFError`` (steps of a
few hundred quanta or more; python/cpython#101911). Seeking relative to the
member's own position is what the code means, on any version.
"""

from __future__ import annotations

__all__ = ["fix_zipfile_shared_seek"]

import os
import zipfile


def fix_zipfile_shared_seek() -> None:
    """Make ``zipfile``'s shared file objects seek ``SEEK_CUR`` from their own position (idempotent)."""
    shared = zipfile._SharedFile
    if getattr(shared.seek, "_radio_clean_fix", False):
        return
    original = shared.seek

    def seek(self, offset, whence=os.SEEK_SET):
        if whence == os.SEEK_CUR:
            with self._lock:
                offset, whence = self._pos + offset, os.SEEK_SET
        return original(self, offset, whence)

    seek._radio_clean_fix = True
    shared.seek = seek
