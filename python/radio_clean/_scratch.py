"""Scratch directories named by host and process, so that those of a killed process can be found.

A process killed outright (SIGKILL, a node lost) cannot remove its scratch;
the next radio_clean process on the same host that makes scratch of the same
kind removes what processes no longer alive left behind. A process asked to
stop (SIGTERM) removes its own: the command line turns the signal into
`KeyboardInterrupt`, so ``finally`` blocks and exit hooks run as on Ctrl-C.
"""

from __future__ import annotations

__all__ = [
    "make_scratch_dir",
    "process_alive",
    "remove_stale_scratch",
    "scratch_host",
]

import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable


def scratch_host() -> str:
    """Name of this host as it appears in scratch directory names."""
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"


def make_scratch_dir(prefix: str) -> str:
    """Make a scratch directory ``PREFIX<host>-<pid>-<random>`` in the temporary directory."""
    return tempfile.mkdtemp(prefix=f"{prefix}{scratch_host()}-{os.getpid()}-")


def remove_stale_scratch(prefix: str, before_removal: Callable[[str], None] | None = None) -> None:
    """Remove scratch directories of ``prefix`` whose process on this host is no longer alive.

    ``before_removal``, if given, is called with each such directory's path
    before it is removed (to remove what it records, made elsewhere).
    """
    pattern = re.compile(rf"{re.escape(prefix)}{re.escape(scratch_host())}-(\d+)-")
    directory = tempfile.gettempdir()
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        match = pattern.match(name)
        if match is None or int(match.group(1)) == os.getpid() or process_alive(int(match.group(1))):
            continue
        if before_removal is not None:
            before_removal(os.path.join(directory, name))
        shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


def process_alive(pid: int) -> bool:
    """Whether a process with this ID exists (someone else's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
