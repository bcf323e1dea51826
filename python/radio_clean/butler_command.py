"""``butler`` with radio_clean's fix of `zipfile`: the command of the final job of radio_clean's bps files.

bps ends every step with ``butler aggregate-graph``, whose scanner processes
read the quanta of the step's graph one by one. On the Python versions with
the `zipfile` bug that `radio_clean._zipfix` fixes they stop with
``EOFError`` once a step has a few hundred quanta, and ``butler`` never
imports radio_clean. The submit files run ``python -m
radio_clean.butler_command aggregate-graph ...`` instead: the fix is applied
when this module is imported, which is also how the scanner processes
(started with multiprocessing's ``spawn``, which imports the main module of
the parent) get it. Everything else is ``butler``'s own command line.
"""

from __future__ import annotations

import sys

from lsst.daf.butler.cli.butler import main

from ._zipfix import fix_zipfile_shared_seek

# Here, not under __main__: spawned child processes import this module (as __mp_main__) and need the
# fix too.
fix_zipfile_shared_seek()

if __name__ == "__main__":
    sys.exit(main())
