"""Scratch directories named by host and process, so that those of a killed process can be found.

A process killed outright (SIGKILL, a node lost) cannot remove its scratch;
the next radio_clean process on the same host that makes scratch of the same
kind removes what processes no longer alive left behind. A process asked to
stop (SIGTERM) removes its own: `exit_on_termination` turns the signal into
`SystemExit`, so ``finally`` blocks and exit hooks run as they do on Ctrl-C.
"""

from __future__ import annotations

__all__ = [
    "exit_on_termination",
    "make_scratch_dir",
    "process_alive",
    "remove_stale_scratch",
    "scratch_host",
]

import os
import re
import shutil
import signal
import socket
import tempfile
import threading


def scratch_host() -> str:
    """Name of this host as it appears in scratch directory names."""
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"


def make_scratch_dir(prefix: str) -> str:
    """Make a scratch directory ``PREFIX<host>-<pid>-<random>`` in the temporary directory."""
    return tempfile.mkdtemp(prefix=f"{prefix}{scratch_host()}-{os.getpid()}-")


def remove_stale_scratch(prefix: str) -> None:
    """Remove scratch directories of ``prefix`` whose process on this host is no longer alive."""
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


def exit_on_termination() -> None:
    """Make SIGTERM end this process through `SystemExit` (status 143), so that its scratch is removed.

    Python's default is to die at once, skipping the ``finally`` blocks and
    exit hooks that remove scratch directories. Only the main thread can
    set a handler, and a handler someone else set is left alone.
    """
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) in (
        signal.SIG_DFL,
        None,
    ):
        signal.signal(signal.SIGTERM, _exit_on_signal)


def _exit_on_signal(signum: int, frame) -> None:
    # A second SIGTERM while cleaning up ends the process at once.
    signal.signal(signum, signal.SIG_DFL)
    raise SystemExit(128 + signum)
