"""Work done on a second thread while CASA computes: software versions, and imports the tasks will need.

CASA's calls release the GIL, so a second thread's Python runs beside them on a
second core. Two costs of every run are taken off the loop's path that way:

- the ``packages`` dataset (the software versions of the run, written by its
  first step): `lsst.utils.packages.Packages.fromSystem` reads the metadata of
  every installed distribution, about half a second;
- the modules that tasks import only when they first run (scipy.ndimage for
  auto-multithresh, matplotlib and WCSAxes for the quick-look figures), about
  a second together, otherwise imported in the middle of the loop.

Nothing is made here that the loop would not make itself: a module imported
on the thread is the module the task imports (Python's import lock serialises
the two), and the versions are the middleware's own `Packages`.
"""

from __future__ import annotations

__all__ = ["BackgroundPreparation"]

import importlib
import logging
import threading
from collections.abc import Iterable

from lsst.utils.packages import Packages

_log = logging.getLogger(__name__)


class BackgroundPreparation:
    """Compute the software versions, then import ``modules``, on a daemon thread.

    Parameters
    ----------
    modules : `~collections.abc.Iterable` [`str`]
        Modules to import after the versions are known (so that the versions
        are those of the modules imported when the run began, as when the
        middleware computes them at its first step).
    """

    def __init__(self, modules: Iterable[str]) -> None:
        self._modules = list(dict.fromkeys(modules))
        self._packages: Packages | None = None
        self._error: BaseException | None = None
        self._packages_known = threading.Event()
        threading.Thread(target=self._work, name="radio_clean-background", daemon=True).start()

    def _work(self) -> None:
        try:
            self._packages = Packages.fromSystem()
        except BaseException as err:  # handed to the loop by `packages`
            self._error = err
        finally:
            self._packages_known.set()
        for name in self._modules:
            try:
                importlib.import_module(name)
            except Exception as err:  # the task's own import says what is wrong, where it matters
                _log.debug("Importing %s ahead of its task failed: %s", name, err)

    def packages(self) -> Packages:
        """The software versions, once computed (waits for them).

        Raises
        ------
        Exception
            Whatever `~lsst.utils.packages.Packages.fromSystem` raised.
        """
        self._packages_known.wait()
        if self._error is not None:
            raise self._error
        assert self._packages is not None
        return self._packages
