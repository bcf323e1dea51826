"""casatasks' imager helpers without importing every CASA task.

``import casatasks`` runs a package ``__init__`` that imports all of CASA's
~100 tasks: 1.5-2 s of a process's start-up, of which radio_clean needs two
modules (tclean's parameter handling, `ImagerParameters`, and tclean's
signature). `casatasks_package` puts the package in `sys.modules` with its
``casalog`` made as ``__init__`` makes it, but imports a task only when it is
asked for (``casatasks.tclean``, ``from casatasks import applycal``), the
way the full package would give it. Any other attribute (``version``...) runs
the package's own ``__init__`` first, so code that needs the whole package
gets it unchanged.
"""

from __future__ import annotations

__all__ = ["casatasks_package"]

import importlib
import importlib.util
import os
import sys
from types import ModuleType

from ._log import reattach_casa_log
from ._setup import set_up_casa

_NAME = "casatasks"


def casatasks_package() -> ModuleType:
    """Return the casatasks package, importing its tasks only when used.

    If casatasks was imported already (by a user's script, say), that
    package is returned as it is.
    """
    # casaconfig, as casatools, reads the site configuration when it is imported.
    casatools = set_up_casa()
    package = sys.modules.get(_NAME)
    if package is not None:
        return package
    spec = importlib.util.find_spec(_NAME)
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        raise ImportError("casatasks is not installed.")
    from casaconfig import config

    package = importlib.util.module_from_spec(spec)
    # As casatasks/__init__.py makes it: the logsink every task posts to.
    package.casalog = casatools.logsink(config.logfile)
    task_files = {
        name.removesuffix(".py")
        for location in spec.submodule_search_locations
        for name in os.listdir(location)
        if name.endswith(".py") and not name.startswith("_")
    }

    def lazy_attribute(name: str):
        if name in task_files:
            task = getattr(importlib.import_module(f"{_NAME}.{name}"), name, None)
            if task is not None:
                # casatasks/__init__.py binds the task, not its module, to the name.
                setattr(package, name, task)
                return task
        if name.startswith("__"):
            raise AttributeError(name)
        # Anything else: complete the package with its own __init__, once.
        first_casalog = package.casalog
        del package.__getattr__
        spec.loader.exec_module(package)
        # The __init__ made a new casalog, the global sink now. Modules imported before (the
        # imager helpers: `from casatasks import casalog`) hold the first one, which is no longer
        # global; posting to it would crash casatools. Give them the new one.
        for module_name, module in list(sys.modules.items()):
            if module_name.startswith(f"{_NAME}.") and getattr(module, "casalog", None) is first_casalog:
                module.casalog = package.casalog
        # The new casalog took CASA's log away from radio_clean's forwarder.
        reattach_casa_log(package.casalog)
        return getattr(package, name)

    package.__getattr__ = lazy_attribute
    sys.modules[_NAME] = package
    return package
