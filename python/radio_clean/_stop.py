"""A stop asked for by a signal (Ctrl-C, SIGTERM), remembered where a library loses its exception.

The signal handler raises `KeyboardInterrupt` where the program is, as
Python's own does, so that a run stops at once and its ``finally`` blocks
clean up. But the exception is raised inside whatever code runs at that
moment, and third-party code (task construction, a database commit) may
turn it into another exception or drop it. The request is also remembered,
so that the loop can check it between quanta and say "stopped" rather than
"failed", or stop a run that would otherwise go on.
"""

from __future__ import annotations

__all__ = ["raise_if_stop_requested", "stop_on_signals", "stop_requested"]

import contextlib
import signal
from collections.abc import Iterator

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_requested: str | None = None


def _request_stop(signal_number: int, frame) -> None:
    global _requested
    _requested = signal.Signals(signal_number).name
    raise KeyboardInterrupt(_requested)


def stop_requested() -> str | None:
    """The name of the signal that asked this run to stop (``"SIGINT"``...), or `None`."""
    return _requested


def raise_if_stop_requested() -> None:
    """Raise `KeyboardInterrupt` (with the signal's name) if a signal asked the run to stop."""
    if _requested is not None:
        raise KeyboardInterrupt(_requested)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise `KeyboardInterrupt` and are remembered."""
    global _requested
    _requested = None
    previous = {number: signal.signal(number, _request_stop) for number in _STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
