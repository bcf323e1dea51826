"""``pipetask`` with radio_clean's fix of `zipfile`: the job command of radio_clean's bps files.

A bps job runs ``pipetask run-qbb GRAPH --qgraph-node-id ...``, which reads
only its own quanta of the step's graph. On the Python versions with the
`zipfile` bug that `radio_clean._zipfix` fixes, that read stops with
``EOFError`` once a step has a few hundred quanta. The submit files
(``bps/continuum_common.yaml``) run ``python -m radio_clean.pipetask_command
run-qbb ...`` instead: the fix is applied when this module is imported, as
`radio_clean.butler_command` does for the final job (and for the same
reason: processes that ``pipetask -j`` spawns import this module too).
Everything else is ``pipetask``'s own command line.
"""

from __future__ import annotations

import sys

from lsst.ctrl.mpexec.cli.pipetask import main

from ._zipfix import fix_zipfile_shared_seek

fix_zipfile_shared_seek()

if __name__ == "__main__":
    sys.exit(main())
