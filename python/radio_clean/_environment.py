"""Process environment that casatools needs before it is first imported."""

__all__ = ["configure_casa_environment"]

import os

# casatools bundles an older libsqlite3; if that is loaded first, Python's _sqlite3 (which the
# Butler registry uses) fails with "undefined symbol: sqlite3_deserialize". Load ours first.
import sqlite3  # noqa: F401
from pathlib import Path

_SITE_CONFIG = Path(__file__).with_name("casasiteconfig.py")


def configure_casa_environment() -> None:
    """Point casatools at radio_clean's offline site configuration.

    A site configuration the user already chose (``CASASITECONFIG``) is left
    alone. This must run before casatools is imported; importing
    ``radio_clean`` does it.
    """
    os.environ.setdefault("CASASITECONFIG", str(_SITE_CONFIG))
