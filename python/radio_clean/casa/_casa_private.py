"""Everything radio_clean takes from CASA that CASA does not document, in one place.

tclean is one Python function (casatasks ``task_tclean`` and
``private/imagerhelpers/imager_base.py``) driving four casatools tools. To
run its steps one at a time with tclean's exact results, radio_clean calls
the same private helpers and repeats the same tool call sequences. None of
this is CASA's public interface: it holds because casatools and casatasks
are pinned (``pyproject.toml``). `bench/casa_api_matrix.py` exercises
exactly the list below against the casatools installed
(``tests/test_casa_api.py`` runs it in ``make test``), and
``doc/casa-api.rst`` records what it said for other releases.

Relied on (tested with casatools and casatasks 6.7.5.18):

1. ``casatasks.private.imagerhelpers.input_parameters``: ``ImagerParameters``
   (its constructor's keywords, ``checkParameters()`` returning `False` on
   bad input, and ``getSelPars``, ``getImagePars``, ``getGridPars``,
   ``getNormPars``, ``getWeightPars``, ``getDecPars``, ``getIterPars``
   giving the tool records, image ``"0"``) and ``sanitize_tclean_inputs``
   (tclean's parameters in, ``(given, constructor defaults)`` out).
2. ``task_tclean``'s adjustments before it builds ``ImagerParameters``:
   specmode ``cont`` is ``mfs``; ``mosweight`` only with the mosaic and
   awp2 gridders; no ``perchanweightdensity`` for mfs (`imager_parameters`).
3. tclean's defaults are the defaults of ``casatasks.tclean.__call__``
   (`tclean_defaults`); the package ``__init__`` makes ``casalog`` as
   ``casatools.logsink(casaconfig.config.logfile)`` and binds each task
   module's function of the same name (``_casatasks.casatasks_package``).
4. Stop codes: ``imager_base.getStopDescription`` (`STOP_REASONS`).
5. Tool set-up, as ``PySynthesisImager`` does it (`SynthesisTools`):
   synthesisimager ``selectdata`` per MS, ``defineimage(impars, gridpars)``,
   ``normalizerinfo``, ``setweighting(**weightpars)``;
   synthesisnormalizer ``setupnormalizer(normpars=)``; synthesisdeconvolver
   ``setupdeconvolution(decpars=)``; ``done`` on each, newest first.
6. The PSF (`make_psf_images`) and major cycle (`run_major_cycle_calls`)
   sequences of ``PySynthesisImager.makePSF``/``runMajorCycle``, with the
   normalization in Python for mfs and mtmfs only (`divides_in_python`).
7. The iteration controller, ``casatools.iterbotsink`` (`IterationController`):
   ``setupiteration(iterpars=)``, ``endmajorcycle``,
   ``resetminorcycleinfo``, ``mergeinitrecord(record, 0)``,
   ``cleanComplete(reachedMajorLimit=)`` (the stop code),
   ``cleanComplete(lastcyclecheck=True)``, ``getminorcyclecontrols``,
   ``mergeexecrecord(record, 0)``, ``getiterationsummary`` and ``done``, in
   the order of ``imager_base`` (see `IterationController.replay`);
   its state is per process, not per tool. The deconvolver's
   ``initminorcycle`` record carries ``peakresidual`` and ``maxpsfsidelobe``,
   ``executeminorcycle(iterbotrecord=)``'s carries ``iterdone``.
"""

from __future__ import annotations

__all__ = [
    "CONVERGED_STOP_CODES",
    "STOP_REASONS",
    "RELIED_ON_TOOL_METHODS",
    "ZERO_ITERATIONS_STOP_CODE",
    "IterationController",
    "SynthesisTools",
    "divides_in_python",
    "imager_parameter_classes",
    "imager_parameters",
    "make_psf_images",
    "run_major_cycle_calls",
    "tclean_defaults",
]

import functools
import inspect
from collections.abc import Iterable, Mapping
from typing import Any

from ._casatasks import casatasks_package
from ._log import CasaError, casa_log_forwarded, reattach_casa_log
from ._setup import casatools

# tclean's stop codes (casatasks imager_base.getStopDescription). 3 is the iteration controller's
# "force stop" (an interactive stop, which radio_clean has not); tclean's summary of a niter=0 run
# has it too, described as zero iterations performed.
STOP_REASONS = {
    0: "not converged",
    1: "iteration limit",
    2: "threshold",
    3: "zero iterations performed",
    4: "no change in peak residual across two major cycles",
    5: "peak residual increased by more than 3 times from the previous major cycle",
    6: "peak residual increased by more than 3 times from the minimum reached",
    7: "zero mask",
    8: "any combination of n-sigma and other valid exit criterion",
    9: "reached nmajor",
}
ZERO_ITERATIONS_STOP_CODE = 3
"""tclean's stop code when ``niter=0`` (the residual made, no minor cycle)."""
# Stop codes that mean a convergence criterion was met (a threshold), not a limit or a divergence.
CONVERGED_STOP_CODES = frozenset({2, 8})

# The synthesis tools' methods radio_clean calls, with the keywords it passes them by name.
# bench/casa_api_matrix.py checks each against the casatools installed.
RELIED_ON_TOOL_METHODS: dict[str, dict[str, tuple[str, ...]]] = {
    "synthesisimager": {
        "selectdata": (), "defineimage": (), "normalizerinfo": (), "setweighting": (), "makepsf": (),
        "makepb": (), "getweightdensity": (), "setweightdensity": (), "executemajorcycle": ("controls",),
        "unlockimages": (), "done": (),
    },
    "synthesisnormalizer": {
        "setupnormalizer": ("normpars",), "gatherpsfweight": (), "dividepsfbyweight": (),
        "divideweightbysumwt": (), "normalizeprimarybeam": (), "dividemodelbyweight": (),
        "scattermodel": (), "gatherresidual": (), "divideresidualbyweight": (),
        "multiplymodelbyweight": (), "done": (),
    },
    "synthesisdeconvolver": {
        "setupdeconvolution": ("decpars",), "initminorcycle": (), "executeminorcycle": ("iterbotrecord",),
        "checkrestoringbeam": (), "setupmask": (), "restore": (), "pbcor": (), "done": (),
    },
    "iterbotsink": {
        "setupiteration": ("iterpars",), "endmajorcycle": (), "resetminorcycleinfo": (),
        "mergeinitrecord": (), "cleanComplete": ("lastcyclecheck", "reachedMajorLimit"),
        "getminorcyclecontrols": (), "mergeexecrecord": (), "getiterationsummary": (), "done": (),
    },
}  # fmt: skip

# tclean parameters that radio_clean sets itself (inputs, outputs, execution).
_NOT_USER_PARAMETERS = frozenset(
    {
        "vis", "imagename", "selectdata", "parallel", "interactive", "calcres", "calcpsf", "restart",
        "savemodel", "fullsummary", "psfphasecenter", "outlierfile", "startmodel",
    }
)  # fmt: skip


@functools.cache
def imager_parameter_classes() -> tuple[Any, Any]:
    """Return casatasks' ``ImagerParameters`` and ``sanitize_tclean_inputs``."""
    casatasks = casatasks_package()
    from casatasks.private.imagerhelpers.input_parameters import ImagerParameters, sanitize_tclean_inputs

    # Importing casatasks points CASA's log at a file of its own; take it back.
    reattach_casa_log(casatasks.casalog)
    return ImagerParameters, sanitize_tclean_inputs


@functools.cache
def tclean_defaults() -> dict[str, Any]:
    """Return tclean's default value of every parameter a user may set."""
    casatasks = casatasks_package()
    reattach_casa_log(casatasks.casalog)
    signature = inspect.signature(casatasks.tclean.__call__)
    return {
        name: parameter.default
        for name, parameter in signature.parameters.items()
        if name not in _NOT_USER_PARAMETERS and parameter.default is not inspect.Parameter.empty
    }


def imager_parameters(tclean_parameters: Mapping[str, Any]):
    """Turn a complete set of tclean parameters into ``ImagerParameters``, as task_tclean does.

    Parameters
    ----------
    tclean_parameters : `~collections.abc.Mapping`
        Every tclean parameter by name (defaults filled in).

    Returns
    -------
    imager_parameters : ``ImagerParameters``
        Checked by CASA.

    Raises
    ------
    CasaError
        If CASA rejects the parameters (its log says why).
    """
    ImagerParameters, sanitize_tclean_inputs = imager_parameter_classes()
    tclean_parameters = dict(tclean_parameters)
    # The same adjustments task_tclean makes before building ImagerParameters.
    if tclean_parameters["specmode"] == "cont":
        tclean_parameters["specmode"] = "mfs"
    given, constructor_defaults = sanitize_tclean_inputs(tclean_parameters)
    arguments = {name: given.get(name, default) for name, default in constructor_defaults.items()}
    if arguments["mosweight"] and arguments["gridder"] not in ("mosaic", "awp2"):
        arguments["mosweight"] = False
    if arguments["specmode"] == "mfs":
        arguments["perchanweightdensity"] = False
    with casa_log_forwarded():
        parameters = ImagerParameters(**arguments)
        errors = parameters.checkParameters()
    if errors is False:
        raise CasaError("CASA rejected the imaging parameters; the CASA log above says which.")
    return parameters


def divides_in_python(parameters: Mapping[str, Any]) -> bool:
    """Whether tclean normalizes by the weights in Python (mfs, mtmfs) rather than in C++ (cubes)."""
    specmode = parameters.get("specmode", "mfs")
    return specmode in ("mfs", "cont") or parameters.get("deconvolver") == "mtmfs"


class SynthesisTools:
    """Synthesis tools set up for one step (or kept for a chain), as PySynthesisImager sets them up.

    Parameters
    ----------
    parameters : ``ImagerParameters``
        What the tools are set up with.
    """

    def __init__(self, parameters) -> None:
        self.parameters = parameters
        self._open: list[Any] = []

    def imager(self):
        """Return a new synthesisimager with the data selected, image defined and weighting set."""
        imager = casatools.synthesisimager()
        self._open.append(imager)
        for key in sorted(self.parameters.getSelPars()):
            imager.selectdata(self.parameters.getSelPars()[key])
        imager.defineimage(self.parameters.getImagePars()["0"], self.parameters.getGridPars()["0"])
        imager.normalizerinfo(self.parameters.getNormPars()["0"])
        imager.setweighting(**self.parameters.getWeightPars())
        return imager

    def normalizer(self):
        """Return a new synthesisnormalizer, set up."""
        normalizer = casatools.synthesisnormalizer()
        self._open.append(normalizer)
        normalizer.setupnormalizer(normpars=self.parameters.getNormPars()["0"])
        return normalizer

    def deconvolver(self):
        """Return a new synthesisdeconvolver, set up."""
        deconvolver = casatools.synthesisdeconvolver()
        self._open.append(deconvolver)
        deconvolver.setupdeconvolution(decpars=self.parameters.getDecPars()["0"])
        return deconvolver

    def tools(self) -> list[Any]:
        """The tools open now."""
        return list(self._open)

    def close(self) -> None:
        """Close the tools, newest first."""
        for tool in reversed(self._open):
            tool.done()
        self._open.clear()


def make_psf_images(parameters: Mapping[str, Any], imager, normalizer, deconvolver) -> None:
    """Make and normalize the PSF, fit the beam, make and normalize the PB (PySynthesisImager.makePSF)."""
    imager.makepsf()
    if divides_in_python(parameters):
        normalizer.gatherpsfweight()
        normalizer.dividepsfbyweight()
        normalizer.divideweightbysumwt()
    deconvolver.checkrestoringbeam()
    # For cubes with the standard gridder CASA makes the PB together with the PSF.
    gridder, specmode = parameters.get("gridder", "standard"), parameters.get("specmode", "mfs")
    cube_standard = "stand" in gridder and "cube" in specmode
    if not cube_standard:
        imager.makepb()
    normalizer.normalizeprimarybeam()


def run_major_cycle_calls(
    parameters: Mapping[str, Any],
    imager,
    normalizer,
    *,
    usemask: str,
    divide_model: bool,
    normalize: bool,
) -> None:
    """Predict the model and grid the residual: PySynthesisImager.runMajorCycle's calls.

    Parameters
    ----------
    parameters : `~collections.abc.Mapping`
        tclean parameters by name (specmode, deconvolver).
    imager, normalizer
        The synthesisimager and synthesisnormalizer.
    usemask : `str`
        The deconvolver record's ``usemask``.
    divide_model : `bool`
        Divide the model by the weight image before it is scattered (not
        with facets: a fresh normalizer has no facet stores).
    normalize : `bool`
        Gather and divide the residual by the weights afterwards.
    """
    in_python = divides_in_python(parameters)
    if in_python:
        if divide_model:
            normalizer.dividemodelbyweight()
        normalizer.scattermodel()
    # lastcycle only matters for saving a model column, which radio_clean never does.
    imager.executemajorcycle(controls={"lastcycle": False, "usemask": usemask})
    if normalize and in_python:
        normalizer.gatherresidual()
        normalizer.divideresidualbyweight()
        normalizer.multiplymodelbyweight()


class IterationController:
    """tclean's iteration controller (a casatools iterbotsink), after the dirty image.

    Parameters
    ----------
    iteration_parameters : `~collections.abc.Mapping`
        ``ImagerParameters.getIterPars()``.

    Notes
    -----
    casatools keeps the iterbotsink's state per process, not per tool: a
    second ``setupiteration`` is ignored and ``done`` on any tool resets it.
    Use one controller at a time and call `done` when finished.
    """

    def __init__(self, iteration_parameters: Mapping[str, Any]) -> None:
        self._tool = casatools.iterbotsink()
        self._tool.setupiteration(iterpars=dict(iteration_parameters))
        self._tool.endmajorcycle()  # the dirty image

    @classmethod
    def replay(
        cls, iteration_parameters: Mapping[str, Any], cycles: Iterable[Mapping[str, Any]]
    ) -> IterationController:
        """Return a controller in the state tclean's has after these minor cycles.

        Parameters
        ----------
        iteration_parameters : `~collections.abc.Mapping`
            ``ImagerParameters.getIterPars()``.
        cycles : iterable of `~collections.abc.Mapping`
            Per minor cycle: ``inits`` (the deconvolver's ``initminorcycle``
            records merged before it) and ``exec`` (its
            ``executeminorcycle`` record), as CASA records.
        """
        controller = cls(iteration_parameters)
        for cycle in cycles:
            for init in cycle["inits"]:
                controller.merge_init(init, reached_major_limit=False)
            controller.minor_cycle_controls()
            controller.merge_exec(cycle["exec"])
            controller.end_major_cycle()
        return controller

    def merge_init(self, record: Mapping[str, Any], *, reached_major_limit: bool) -> int:
        """Merge a deconvolver's ``initminorcycle`` record; return the stop code (0: go on)."""
        self._tool.resetminorcycleinfo()
        self._tool.mergeinitrecord(record, 0)
        return self._tool.cleanComplete(reachedMajorLimit=reached_major_limit)

    def minor_cycle_controls(self) -> dict[str, Any]:
        """Return what the next minor cycle is told (cycle threshold, cycle iterations...)."""
        return self._tool.getminorcyclecontrols()

    def merge_exec(self, record: Mapping[str, Any]) -> None:
        """Merge a deconvolver's ``executeminorcycle`` record."""
        self._tool.resetminorcycleinfo()
        self._tool.mergeexecrecord(record, 0)

    def stop_code(self, *, reached_major_limit: bool) -> int:
        """Return the stop code now (0: not stopped)."""
        return self._tool.cleanComplete(reachedMajorLimit=reached_major_limit)

    def end_major_cycle(self) -> None:
        """Close a minor cycle and count the major cycle after it."""
        self._tool.cleanComplete(lastcyclecheck=True)
        self._tool.endmajorcycle()

    def summary(self) -> dict[str, Any]:
        """Return the iteration summary (iterdone, nmajordone, threshold...)."""
        return self._tool.getiterationsummary()

    def done(self) -> None:
        """Release the controller (and the process's iteration state)."""
        self._tool.done()
