"""Set-up of casatools for radio_clean, done once per process at first use, never at import.

casatools reads its site configuration (``CASASITECONFIG``) when it is
imported, and CASA's log goes to a process-wide sink. Both are process state,
so importing radio_clean changes neither: `set_up_casa` does, called
explicitly by ``radio-clean`` and the imaging loop's workers, and implicitly
by the first casatools call through this bridge (`casatools` below), which is
how a task run by plain ``pipetask run`` gets the same set-up.
"""

from __future__ import annotations

__all__ = ["casatools", "set_up_casa"]

import logging
import os

# casatools bundles an older libsqlite3; if that is loaded first, Python's _sqlite3 (which the
# Butler registry uses) fails with "undefined symbol: sqlite3_deserialize". Load ours first.
import sqlite3  # noqa: F401
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

SITE_CONFIG = str(Path(__file__).parent.parent / "casasiteconfig.py")
"""radio_clean's offline CASA site configuration, used unless ``CASASITECONFIG`` names another."""

_logger = logging.getLogger(__name__)
_lock = threading.Lock()
_casatools: ModuleType | None = None


def set_up_casa() -> ModuleType:
    """Set casatools up for radio_clean in this process, once; return the casatools module.

    Unless the user chose a site configuration (``CASASITECONFIG``), point
    casatools at radio_clean's offline one (data from the pinned ``casadata``
    wheel, no network, no ``casa-*.log`` files), import casatools, and make
    CASA's log reach the ``radio_clean.casa`` Python logger. This sets
    ``CASASITECONFIG`` in the environment (processes started from this one
    configure casatools the same way) and installs the global CASA log sink
    with exit and fork hooks that remove its scratch file.

    Calling it again does nothing. Scripts that use casatools themselves call
    it before ``import casatools``.
    """
    global _casatools
    with _lock:
        if _casatools is None:
            if "casatools" in sys.modules and "CASASITECONFIG" not in os.environ:
                _logger.warning(
                    "casatools was imported before radio_clean set it up: its data come from casatools' own "
                    "site configuration, which may try the network."
                )
            os.environ.setdefault("CASASITECONFIG", SITE_CONFIG)
            import casatools

            from ._log import start_casa_log_forwarding

            start_casa_log_forwarding(casatools.logsink())
            _casatools = casatools
    return _casatools


class _CasatoolsOnFirstUse:
    """The casatools module, set up by `set_up_casa` when an attribute is first asked for."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_casatools if _casatools is not None else set_up_casa(), name)

    def __repr__(self) -> str:
        return f"<casatools, set up {'already' if _casatools is not None else 'at first use'}>"


casatools: Any = _CasatoolsOnFirstUse()
"""casatools for the bridge's modules: ``casatools.table()`` sets CASA up first if need be."""
