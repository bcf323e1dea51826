"""Process environment that casatools needs before it is first imported."""

__all__ = ["configure_casa_environment"]

import os

# casatools bundles an older libsqlite3; if that is loaded first, Python's _sqlite3 (which the
# Butler registry uses) fails with "undefined symbol: sqlite3_deserialize". Load ours first.
import sqlite3  # noqa: F401
from pathlib import Path

_SITE_CONFIG = Path(__file__).with_name("casasiteconfig.py")


def configure_casa_environment() -> None:
    """Point casatools at radio_clean's offline site configuration; let CASA's idle threads sleep.

    A site configuration the user already chose (``CASASITECONFIG``) is left
    alone, and so is an OpenMP wait policy (``OMP_WAIT_POLICY``). This must
    run before casatools is imported; importing ``radio_clean`` does it.

    Notes
    -----
    CASA's gridders run many short OpenMP regions; by default (GNU OpenMP)
    a thread that finishes one spins for its next. Whenever the cores are
    shared (another process, ``--jobs``, a batch node) the spinning threads
    take the cores the working ones need: measured on a 2-core machine under
    load, a major cycle of the simulated mtmfs job cost 19 s of CPU spinning
    and 3.2 s passive, for the same pixels (bit for bit, as with one thread).
    """
    os.environ.setdefault("CASASITECONFIG", str(_SITE_CONFIG))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
