"""CASA's log into Python logging, and the error type of the bridge."""

from __future__ import annotations

import atexit
import contextlib
import faulthandler
import logging
import multiprocessing.util
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator

from .._scratch import make_scratch_dir, remove_stale_scratch
from ._setup import set_up_casa

__all__ = [
    "CasaError",
    "casa_log_forwarded",
    "forward_casa_log",
    "reattach_casa_log",
    "start_casa_log_forwarding",
]

_casa_log = logging.getLogger("radio_clean.casa")

# CASA priorities -> Python levels. CASA's INFO is what tclean users read in casa.log.
_CASA_LEVELS = {
    "SEVERE": logging.ERROR,
    "WARN": logging.WARNING,
    "INFO": logging.INFO,
}


_SILENCED_CASA_MESSAGES = (
    "Leap second table TAI_UTC seems out-of-date",
    "Until the table is updated (see the CASA documentation or your system admin)",
    "times and coordinates derived from UTC could be wrong by 1s or more",
)


_SCRATCH_PREFIX = "radio_clean-casalog-"


class CasaError(RuntimeError):
    """A casatools operation failed; the message says what and on which input."""


class _CasaLogForwarder:
    """Send CASA's log messages to the ``radio_clean.casa`` Python logger.

    casatools can only log to a file. We give it a private file in a
    temporary directory and, after each casatools operation, re-emit the
    lines it appended as Python log records.

    Parameters
    ----------
    sink : `casatools.logsink`
        The sink to make global.
    """

    def __init__(self, sink) -> None:
        # Processes that end with os._exit (forkserver, bps and pipetask workers) or are killed
        # cannot remove theirs; the next process does.
        remove_stale_scratch(_SCRATCH_PREFIX)
        self._dir = make_scratch_dir(_SCRATCH_PREFIX)
        self._owner = os.getpid()
        self._path = os.path.join(self._dir, "casa.log")
        self._offset = 0
        self.attach(sink)
        atexit.register(self.close)
        # multiprocessing's workers (pipetask -j spawns them) end with os._exit, which skips atexit;
        # they run multiprocessing's finalizers first (only in the process that registered them).
        multiprocessing.util.Finalize(None, self.close, exitpriority=10)
        # pipetask forks each quantum from a process that has imported radio_clean; with a
        # shared file, quanta running side by side would forward each other's messages.
        os.register_at_fork(after_in_child=self._use_own_file)

    def _use_own_file(self) -> None:
        # Left in the owner's directory, which the owner removes when it exits: a forked
        # quantum ends with os._exit, without running atexit handlers.
        self._path = os.path.join(self._dir, f"casa-{os.getpid()}.log")
        self.attach(self._sink)

    def attach(self, sink) -> None:
        """Make ``sink`` the global CASA log sink, writing to our file."""
        # Keep the sink alive: other sinks made global earlier are destroyed, and posting to
        # one of those afterwards crashes casatools.
        self._sink = sink
        sink.setglobal(True)
        sink.setlogfile(self._path)
        sink.showconsole(False)
        # casadata's leap-second table has a validity date that an offline installation cannot
        # renew; casacore then prints a SEVERE warning to the console on every UTC conversion.
        # The table content is still right until the next leap second is announced (see
        # doc/casa-data.rst), so drop the message rather than alarm every run.
        sink.filterMsg(list(_SILENCED_CASA_MESSAGES))
        # casatools may start the file afresh; read on from wherever it now ends.
        self._offset = os.path.getsize(self._path) if os.path.exists(self._path) else 0

    def forward(self) -> None:
        try:
            with open(self._path, "rb") as stream:
                stream.seek(self._offset)
                chunk = stream.read()
        except FileNotFoundError:
            return
        # Only forward whole lines; a partial last line waits for the next call.
        end = chunk.rfind(b"\n") + 1
        self._offset += end
        for line in chunk[:end].decode(errors="replace").splitlines():
            parts = line.split("\t", 3)
            if len(parts) == 4:
                _, priority, origin, message = parts
                level = _CASA_LEVELS.get(priority, logging.DEBUG)
                _casa_log.log(level, "%s: %s", origin.rstrip("+"), message)
            elif line.strip():
                _casa_log.info("%s", line)

    def close(self) -> None:
        self.forward()
        if os.getpid() == self._owner:
            shutil.rmtree(self._dir, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._path)


_forwarder: _CasaLogForwarder | None = None


def start_casa_log_forwarding(sink) -> None:
    """Make ``sink`` CASA's global log sink and forward what it logs, from now on.

    Called once, by `set_up_casa`: the forwarder's scratch file is removed
    at exit (``atexit``), and a forked child writes a file of its own
    (``os.register_at_fork``).
    """
    global _forwarder
    if _forwarder is None:
        _forwarder = _CasaLogForwarder(sink)


def reattach_casa_log(sink) -> None:
    """Send CASA's log to radio_clean's forwarder again through ``sink``.

    Importing casatasks makes its own ``casalog`` the global sink, writing to a
    file of its own; call this with ``casatasks.casalog`` afterwards.
    """
    set_up_casa()
    _forwarder.forward()
    _forwarder.attach(sink)


def forward_casa_log() -> None:
    """Emit CASA log lines written since the last call as Python log records."""
    # Before set-up, casatools has not been imported through radio_clean: nothing to forward.
    if _forwarder is not None:
        _forwarder.forward()


# What casatools prints on the console: "2026-01-01 12:00:00<TAB>WARN<TAB>origin<TAB>message".
_CASA_CONSOLE_LINE = re.compile(rb"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\t[A-Z0-9]+\t")
_console_capture_depth = 0


@contextlib.contextmanager
def _casa_console_captured() -> Iterator[None]:
    """Keep casatools' own console copies of WARN/SEVERE messages off stderr.

    casatools writes WARN and SEVERE messages to file descriptor 2 whatever
    ``showconsole`` says; they are also in the log file and reach Python
    logging from there. Anything else written to stderr meanwhile (a crash
    message, say) is passed on.
    """
    global _console_capture_depth
    if _console_capture_depth or os.environ.get("RADIO_CLEAN_CASA_CONSOLE"):
        _console_capture_depth += 1
        try:
            yield
        finally:
            _console_capture_depth -= 1
        return
    sys.stderr.flush()
    saved_fd = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        _console_capture_depth = 1
        # A crash inside casatools must still be reported on the real stderr.
        if faulthandler.is_enabled():
            faulthandler.enable(file=saved_fd)
        try:
            yield
        finally:
            _console_capture_depth = 0
            if faulthandler.is_enabled():
                faulthandler.enable(file=2)
            sys.stderr.flush()
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            captured.seek(0)
            other = [line for line in captured.read().splitlines(True) if not _CASA_CONSOLE_LINE.match(line)]
            if other:
                os.write(2, b"".join(other))


@contextlib.contextmanager
def casa_log_forwarded() -> Iterator[None]:
    """Run casatools calls with CASA's log going to Python logging only.

    CASA's messages are forwarded to the ``radio_clean.casa`` logger when the
    enclosed calls finish (or fail); casatools' console copies are dropped.
    """
    set_up_casa()
    try:
        with _casa_console_captured():
            yield
    finally:
        forward_casa_log()
