"""A progress bar for the CLEAN loop on a terminal, kept below the log lines.

``radio-clean image`` draws one line on stderr when it is a terminal: a bar
of the iterations done against ``niter`` (times the fields, bands and chunks
being cleaned), the step just done and the images finished. Log records are
written above it: the line is cleared before each record and drawn again
after. Not on a pipe or a file, where it would only add clutter to a log.
"""

from __future__ import annotations

__all__ = ["ProgressLine"]

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import TextIO

from .loop import LoopProgress

_CLEAR = "\r\x1b[K"
_BAR_WIDTH = 24


class ProgressLine:
    """The loop's progress on one self-overwriting line of a terminal.

    Parameters
    ----------
    niter : `int`
        tclean's ``niter`` (iterations allowed per image).
    stream : `typing.TextIO`, optional
        Where to draw (default `sys.stderr`).
    """

    def __init__(self, niter: int, stream: TextIO | None = None) -> None:
        self._niter = max(0, int(niter))
        self._stream = stream if stream is not None else sys.stderr
        self._text = ""

    @property
    def enabled(self) -> bool:
        """Whether the stream is a terminal (and ``TERM`` is not ``dumb``)."""
        isatty = getattr(self._stream, "isatty", None)
        return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"

    def __call__(self, progress: LoopProgress) -> None:
        """Draw ``progress`` (a `radio_clean.loop.CleanLoop` ``progress`` callback)."""
        chains = progress.converged + progress.failed + progress.remaining
        step = progress.step.rsplit("/", 1)[-1]
        if step.startswith("finish"):
            fraction = (progress.converged + progress.failed) / max(chains, 1)
        else:
            fraction = min(1.0, progress.iterdone / max(self._niter * chains, 1))
        filled = round(fraction * _BAR_WIDTH)
        text = (
            f"[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {step}: {progress.iterdone} iterations"
            f"{f' of {self._niter * chains}' if self._niter else ''}, {progress.converged}/{chains} images "
            f"done, {progress.elapsed:.0f} s"
        )
        if progress.failed:
            text += f", {progress.failed} failed"
        self._text = text
        self._draw()

    def _draw(self) -> None:
        if self.enabled and self._text:
            self._stream.write(_CLEAR + self._text)
            self._stream.flush()

    def _clear(self) -> None:
        if self.enabled and self._text:
            self._stream.write(_CLEAR)
            self._stream.flush()

    @contextlib.contextmanager
    def below_logging(self) -> Iterator[ProgressLine]:
        """Within the block, log records to the same stream are written above the line.

        The line is removed when the block ends, so what is printed next
        (the run's summary) starts on a clean line.
        """
        handlers = [
            handler
            for handler in logging.getLogger().handlers
            if isinstance(handler, logging.StreamHandler) and handler.stream is self._stream
        ]
        originals = {handler: handler.emit for handler in handlers}

        def emit_above(handler: logging.StreamHandler):
            def emit(record: logging.LogRecord) -> None:
                self._clear()
                originals[handler](record)
                self._draw()

            return emit

        for handler in handlers:
            handler.emit = emit_above(handler)  # type: ignore[method-assign]
        try:
            yield self
        finally:
            for handler, emit in originals.items():
                handler.emit = emit  # type: ignore[method-assign]
            self._clear()
            self._text = ""
