"""Check the CASA API that radio_clean relies on against the casatools installed.

Everything radio_clean takes from CASA beyond its documented interface is in
``radio_clean.casa._casa_private`` (its docstring lists it). This script
exercises exactly that list, on a tiny job of casadata's 3C273XC1 demo data,
and prints one line per item: ``ok`` and what was seen, or ``BROKEN`` and what
broke. Items that need a broken one are ``not checked``. Exit status 0 if
every item is ok, 1 otherwise.

Run it against the installed casatools::

    PYTHONPATH=python .venv/bin/python bench/casa_api_matrix.py

or against another release, without touching the project's venv (casatools
and casatasks of the same release; the measures still come from the pinned
casadata)::

    pip install --no-deps --target /tmp/casa-6.7.3.21 casatools==6.7.3.21 casatasks==6.7.3.21
    PYTHONPATH=/tmp/casa-6.7.3.21:python .venv/bin/python bench/casa_api_matrix.py

``doc/casa-api.rst`` records what it said for the releases on PyPI.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import inspect
import os
import sys
import tempfile
import traceback
from collections.abc import Callable

import numpy as np

# A tiny job with several major cycles: 4 minor cycles of 15 iterations, then the iteration limit.
JOB = {
    "imsize": [64],
    "cell": ["2arcsec"],
    "niter": 60,
    "cycleniter": 15,
    "deconvolver": "hogbom",
    "weighting": "briggs",
    "datacolumn": "data",
}
# ImagerParameters must accept these (on top of JOB), as radio_clean's tests and users pass them.
PARAMETER_SETS = {
    "mfs hogbom": {},
    "mtmfs nterms=2 multiscale": {"deconvolver": "mtmfs", "nterms": 2, "scales": [0, 3]},
    "cube wproject": {"specmode": "cube", "gridder": "wproject", "wprojplanes": 4},
    "mosaic pbmask": {"gridder": "mosaic", "usemask": "pb", "pbmask": 0.5},
    "auto-multithresh": {"usemask": "auto-multithresh"},
}
# Largest |radio_clean - tclean| of model and residual, as a fraction of tclean's residual peak.
IMAGE_TOLERANCE = 1e-6


class BrokenError(Exception):
    """An item of the relied-on API does not behave as radio_clean expects."""


class Matrix:
    """Runs the items in order, each at most once, and prints one line per item."""

    def __init__(self) -> None:
        self.results: dict[str, bool] = {}
        self.state: dict[str, object] = {}

    def item(self, name: str, check: Callable[[], str], needs: tuple[str, ...] = ()) -> None:
        missing = [need for need in needs if not self.results.get(need)]
        if missing:
            self.results[name] = False
            print(f"{name}: not checked (needs {', '.join(missing)})", flush=True)
            return
        try:
            detail = check()
        except BrokenError as err:
            self.results[name] = False
            print(f"{name}: BROKEN: {err}", flush=True)
        except BaseException as err:  # noqa: BLE001  (any failure is what this reports)
            self.results[name] = False
            where = traceback.extract_tb(err.__traceback__)[-1]
            message = str(err).strip().splitlines()[-1] if str(err).strip() else ""
            print(
                f"{name}: BROKEN: {type(err).__name__}: {message}"
                f" (at {os.path.basename(where.filename)}:{where.lineno})",
                flush=True,
            )
        else:
            self.results[name] = True
            print(f"{name}: ok ({detail})", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run every item; return 0 if all are ok, 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workdir", help="Directory for the demo MS and the images (default: a temporary one, removed)."
    )
    arguments = parser.parse_args(argv)
    if arguments.workdir:
        os.makedirs(arguments.workdir, exist_ok=True)
        return _run(arguments.workdir)
    with tempfile.TemporaryDirectory(prefix="radio_clean-casa-api-") as workdir:
        return _run(workdir)


def _run(workdir: str) -> int:
    matrix = Matrix()
    state = matrix.state

    def import_casatools() -> str:
        from radio_clean.casa import _casa_private, set_up_casa

        # CASA's offline site configuration, before casatools is imported.
        casatools = set_up_casa()

        state["casatools"], state["private"] = casatools, _casa_private
        return f"casatools {casatools.version_string()} from {os.path.dirname(casatools.__file__)}"

    def import_imager_helpers() -> str:
        ImagerParameters, sanitize = state["private"].imager_parameter_classes()
        # Not casatasks.version_string(): that runs the package's __init__, importing every task.
        version = importlib.metadata.version("casatasks")
        return f"casatasks {version}: {ImagerParameters.__name__}, {sanitize.__name__}"

    def tclean_signature() -> str:
        defaults = state["private"].tclean_defaults()
        needed = {
            "specmode",
            "gridder",
            "deconvolver",
            "mosweight",
            "perchanweightdensity",
            "niter",
            "nmajor",
        }
        missing = needed - set(defaults)
        if missing:
            raise BrokenError(f"tclean has no parameter(s) {', '.join(sorted(missing))}")
        return f"{len(defaults)} parameters with defaults"

    def tool_methods() -> str:
        casatools = state["casatools"]
        problems, count = [], 0
        for tool_name, methods in state["private"].RELIED_ON_TOOL_METHODS.items():
            tool = getattr(casatools, tool_name, None)
            if tool is None:
                problems.append(f"no casatools.{tool_name}")
                continue
            for method, keywords in methods.items():
                count += 1
                function = getattr(tool, method, None)
                if function is None:
                    problems.append(f"no {tool_name}.{method}")
                    continue
                accepted = inspect.signature(function).parameters
                for keyword in keywords:
                    if keyword not in accepted:
                        problems.append(f"{tool_name}.{method} takes no {keyword}=")
        if problems:
            raise BrokenError("; ".join(problems))
        return f"{count} methods of 4 tools, with their keywords"

    def demo_ms() -> str:
        from radio_clean.demo import write_demo_data

        (path,) = write_demo_data(workdir)
        state["ms"] = path
        return os.path.basename(path)

    def imager_parameters() -> str:
        from radio_clean.casa import MsSelection, _synthesis

        selections = [MsSelection(state["ms"])]
        for label, extra in PARAMETER_SETS.items():
            parameters = _synthesis._imager_parameters(
                selections, os.path.join(workdir, "ip"), {**JOB, **extra}
            )
            records = {
                "getIterPars": (parameters.getIterPars(), ("nmajor", "niter", "cycleniter")),
                "getDecPars": (parameters.getDecPars()["0"], ("usemask", "deconvolver")),
                "getGridPars": (parameters.getGridPars()["0"], ("gridder",)),
                "getNormPars": (parameters.getNormPars()["0"], ("pblimit",)),
                "getImagePars": (parameters.getImagePars()["0"], ("imagename",)),
            }
            for method, (record, keys) in records.items():
                missing = [key for key in keys if key not in record]
                if missing:
                    raise BrokenError(f"{label}: {method} lacks {', '.join(missing)}")
            if not parameters.getSelPars() or not parameters.getWeightPars():
                raise BrokenError(f"{label}: no selection or weighting record")
        return f"{len(PARAMETER_SETS)} parameter sets: {', '.join(PARAMETER_SETS)}"

    def steps_match_tclean() -> str:
        from radio_clean.casa import (
            IterationHistory,
            MsSelection,
            clear_engine_cache,
            make_psf,
            read_casa_image,
            reattach_casa_log,
            restore_images,
            run_major_cycle,
            run_minor_cycle,
            update_mask,
        )
        from radio_clean.casa._casatasks import casatasks_package

        selections = [MsSelection(state["ms"])]
        images = dict(make_psf(selections, JOB))
        images.update(run_major_cycle(selections, JOB, images))
        history = IterationHistory()
        while True:
            # As radio_clean's loop does: the mask of every minor cycle from CASA's mask handler.
            images["mask"] = update_mask(JOB, images, selections)
            result = run_minor_cycle(JOB, images, history, selections)
            history = result.history
            if history.stopped:
                break
            images.update(result.models)
            images.update(run_major_cycle(selections, JOB, images))
        images.update(restore_images(JOB, images, selections))
        clear_engine_cache()
        casatasks = casatasks_package()
        try:
            summary = casatasks.tclean(vis=state["ms"], imagename=os.path.join(workdir, "tclean"), **JOB)
        finally:
            reattach_casa_log(casatasks.casalog)
        state["history"], state["summary"] = history, result.summary
        ours = (result.summary["iterdone"], result.summary["nmajordone"], result.summary["stopcode"])
        theirs = (int(summary["iterdone"]), int(summary["nmajordone"]), int(summary["stopcode"]))
        if ours != theirs:
            raise BrokenError(f"(iterdone, nmajordone, stopcode) {ours}, tclean's {theirs}")
        scale = float(np.nanmax(np.abs(read_casa_image(os.path.join(workdir, "tclean.residual")).pixels)))
        differences = {}
        for kind in ("model", "residual", "image"):
            theirs_pixels = read_casa_image(os.path.join(workdir, f"tclean.{kind}")).pixels
            differences[kind] = float(np.nanmax(np.abs(images[kind].pixels - theirs_pixels))) / scale
        worst = max(differences.values())
        described = ", ".join(f"{kind} {value:.1e}" for kind, value in differences.items())
        if not worst <= IMAGE_TOLERANCE:
            raise BrokenError(f"|ours - tclean| / peak residual: {described}")
        return f"iterdone {ours[0]}, nmajordone {ours[1]}, stopcode {ours[2]} as tclean's; {described}"

    def replay_gives_records() -> str:
        from radio_clean.casa import MsSelection, _synthesis

        history = state["history"]
        private = state["private"]
        parameters = _synthesis._imager_parameters(
            [MsSelection(state["ms"])], os.path.join(workdir, "ip"), JOB
        ).getIterPars()
        cycles = [
            {
                "inits": [_synthesis._from_plain(i) for i in c["inits"]],
                "exec": _synthesis._from_plain(c["exec"]),
            }
            for c in history.cycles
        ]
        # Replaying the cycles before each one and merging its init records must give the
        # controls that cycle was given (only one iterbotsink lives at a time in a process).
        for number, cycle in enumerate(cycles):
            controller = private.IterationController.replay(parameters, cycles[:number])
            try:
                for init in cycle["inits"]:
                    controller.merge_init(init, reached_major_limit=False)
                controls = controller.minor_cycle_controls()
            finally:
                controller.done()
            recorded = _synthesis._from_plain(history.cycles[number]["controls"])
            for key in ("cyclethreshold", "cycleniter", "thresholdreached"):
                if key not in controls or controls[key] != recorded[key]:
                    raise BrokenError(
                        f"cycle {number + 1}: {key} {controls.get(key)!r}, recorded {recorded[key]!r}"
                    )
        controller = private.IterationController.replay(parameters, cycles)
        try:
            iteration_summary = controller.summary()
        finally:
            controller.done()
        expected = state["summary"]
        for key in ("iterdone", "nmajordone"):
            if int(iteration_summary[key]) != expected[key]:
                raise BrokenError(f"replayed {key} {iteration_summary[key]}, live {expected[key]}")
        return f"{len(cycles)} cycles: controls and summary as recorded"

    matrix.item("import casatools", import_casatools)
    matrix.item("casatasks imagerhelpers", import_imager_helpers, ("import casatools",))
    matrix.item("tclean signature", tclean_signature, ("import casatools",))
    matrix.item("synthesis tool methods", tool_methods, ("import casatools",))
    matrix.item("demo MS (importuvfits)", demo_ms, ("import casatools",))
    matrix.item(
        "ImagerParameters",
        imager_parameters,
        ("casatasks imagerhelpers", "tclean signature", "demo MS (importuvfits)"),
    )
    matrix.item("steps = tclean", steps_match_tclean, ("ImagerParameters", "synthesis tool methods"))
    matrix.item("iterbotsink replay", replay_gives_records, ("steps = tclean",))
    broken = [name for name, ok in matrix.results.items() if not ok]
    print(f"{len(matrix.results) - len(broken)}/{len(matrix.results)} ok", flush=True)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
