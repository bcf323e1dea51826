"""Importing radio_clean, or any of its modules, changes no process state.

Process-wide set-up (CASA's site configuration in ``CASASITECONFIG``, CASA's
global log sink with its exit and fork hooks) is done by
`radio_clean.casa.set_up_casa`: explicitly by ``radio-clean`` and the loop's
forkserver, or at the first casatools call through the bridge; never at import.

What is compared, in a fresh interpreter, before and after importing every
module of the package: environment variables, working directory, signal
handlers, the garbage collector (enabled, frozen objects, thresholds),
multiprocessing's start method and forkserver preload, the number of
``atexit`` callbacks, open file descriptors, threads, warning filters,
``sys.excepthook`` and the root logger's handlers and level. The third-party
modules radio_clean imports are imported first, in a first interpreter's
order: what *they* do at import is not radio_clean's doing. casatools and
casatasks must not be imported at all.

``radio_clean.tasks._forkserver`` is left out: importing it is, by design, the
set-up of the loop's forkserver process (multiprocessing's preload can only
import), and nothing but that preload imports it.
"""

import json
import os
import subprocess
import sys
import textwrap

_NOT_IMPORTED = "radio_clean.tasks._forkserver"

_LIST_MODULES = textwrap.dedent(
    f"""
    import importlib, json, pkgutil, sys
    import radio_clean

    names = sorted(m.name for m in pkgutil.walk_packages(radio_clean.__path__, "radio_clean."))
    names = [name for name in names if name != {_NOT_IMPORTED!r}]
    for name in names:
        importlib.import_module(name)
    others = [name for name in sys.modules if name.split(".")[0] != "radio_clean" and name != "__main__"]
    print(json.dumps({{"radio_clean": names, "others": others}}))
    """
)

_COMPARE = textwrap.dedent(
    """
    import atexit, faulthandler, gc, importlib, json, logging, multiprocessing, os, signal, sys
    import threading, warnings
    from multiprocessing import forkserver

    modules = json.loads(sys.stdin.read())
    for name in modules["others"]:
        try:
            importlib.import_module(name)
        except Exception:  # modules that cannot be imported on their own are imported by the others
            pass

    def state():
        return {
            "environment": dict(os.environ),
            "cwd": os.getcwd(),
            "signal handlers": {
                number.name: repr(signal.getsignal(number))
                for number in signal.valid_signals()
                if isinstance(number, signal.Signals) and number not in (signal.SIGKILL, signal.SIGSTOP)
            },
            "gc": [gc.isenabled(), gc.get_freeze_count(), list(gc.get_threshold())],
            "start method": multiprocessing.get_start_method(allow_none=True),
            "forkserver preload": repr(getattr(forkserver._forkserver, "_preload_modules", None)),
            "atexit callbacks": atexit._ncallbacks(),
            "open fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
            "threads": sorted(thread.name for thread in threading.enumerate()),
            "warning filters": [repr(f) for f in warnings.filters],
            "excepthook": repr(sys.excepthook),
            "faulthandler": faulthandler.is_enabled(),
            "root logger": [repr(h) for h in logging.getLogger().handlers] + [logging.getLogger().level],
        }

    before = state()
    for name in modules["radio_clean"]:
        importlib.import_module(name)
    after = state()
    changed = {key: [before[key], after[key]] for key in before if before[key] != after[key]}
    if "environment" in changed:
        old, new = changed["environment"]
        changed["environment"] = {
            name: [old.get(name), new.get(name)] for name in {*old, *new} if old.get(name) != new.get(name)
        }
    casa = sorted(name for name in ("casatools", "casatasks", "casaconfig") if name in sys.modules)
    print(json.dumps({"changed": changed, "casa imported": casa}))
    """
)


def _python(code, stdin=""):
    # As a user's fresh shell: this test process has set CASA up, which put CASASITECONFIG in its environment.
    environment = {name: value for name, value in os.environ.items() if name != "CASASITECONFIG"}
    result = subprocess.run(
        [sys.executable, "-c", code], input=stdin, env=environment, capture_output=True, text=True, timeout=99
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_every_module_changes_no_process_state():
    modules = _python(_LIST_MODULES)
    # The whole package, its task modules and the bridge are in the list.
    expected = {"radio_clean.cli", "radio_clean.casa", "radio_clean.loop", "radio_clean.tasks.major_cycle"}
    assert expected <= set(modules["radio_clean"])
    assert len(modules["radio_clean"]) >= 30
    assert not {"casatools", "casatasks", "casaconfig"} & set(modules["others"])
    outcome = _python(_COMPARE, json.dumps(modules))
    assert outcome["changed"] == {}
    assert outcome["casa imported"] == []
