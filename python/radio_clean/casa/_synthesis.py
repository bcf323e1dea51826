"""CASA's synthesis tools, one CLEAN step at a time.

tclean runs PSF, major cycles, mask updates and minor cycles in one process
with four long-lived tools (synthesisimager, synthesisnormalizer,
synthesisdeconvolver, iterbotsink). Here every step is a separate call that
gets its input images as `RadioImage` objects, has them as CASA images in a
scratch directory, runs the tools, and returns the images they made. What
tclean keeps in memory between cycles is carried explicitly:

- images (PSF, PB, sum of weights, residual, model, mask) go through the
  Butler;
- the iteration controller's state is rebuilt in each step by replaying the
  records it merged in earlier cycles (`IterationHistory`), so the cycle
  threshold, iteration counts and stop codes are tclean's own decisions.

When the steps of one chain run one after the other in one process, the warm
engine (`radio_clean.casa._engine`) keeps what tclean keeps between cycles
where that gives the same bits: the scratch images that did not change, the
imager parameters, the synthesisimager that made the PSF, with its data
selection and imaging weights, for the major cycles (standard and wproject
gridders), and the PSF sidelobe level. Deconvolvers and the iteration
controller are set up in every call (see `run_minor_cycle`). Every output is
bit for bit what a fresh set-up gives (see `clear_engine_cache`).

Parameters are tclean's, by name, and are turned into tool records by CASA's
own ``ImagerParameters`` with tclean's defaults, so "the same parameters"
means exactly what it means to tclean.
"""

from __future__ import annotations

__all__ = [
    "STOP_REASONS",
    "IterationHistory",
    "MinorCycleResult",
    "MsSelection",
    "make_psf",
    "normalize_residual",
    "preload_imager_helpers",
    "psf_sidelobe_level",
    "restore_images",
    "run_major_cycle",
    "run_minor_cycle",
    "tclean_defaults",
    "update_mask",
]

import contextlib
import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..image import RadioImage
from . import _engine
from ._casa_private import (
    CONVERGED_STOP_CODES,
    STOP_REASONS,
    ZERO_ITERATIONS_STOP_CODE,
    IterationController,
    SynthesisTools,
    divides_in_python,
    imager_parameter_classes,
    imager_parameters,
    make_psf_images,
    run_major_cycle_calls,
    tclean_defaults,
)
from ._engine import Chain, Workspace, casa_calls, kind_base, scratch_workspace, value_digest
from ._images import read_casa_image, write_casa_image
from ._log import CasaError
from ._setup import casatools


@dataclasses.dataclass(frozen=True)
class MsSelection:
    """One MeasurementSet and what to select from it."""

    path: str
    field: str = ""
    spw: str = ""


def preload_imager_helpers() -> None:
    """Import casatasks' imager helpers and tclean's defaults now.

    Later imaging calls in this process, or in processes forked from it, then
    do not pay for the import.
    """
    imager_parameter_classes()
    tclean_defaults()


def _check_weight_spectrum(selections: Sequence[MsSelection]) -> None:
    # With some MSs carrying WEIGHT_SPECTRUM and others not, CASA adds the column to the
    # ones without: that would modify input data, which radio_clean never does.
    # The answer is kept per set of MSs, as they are on disk (their table.dat changes with a new column).
    key = tuple((s.path, _modification_time(os.path.join(s.path, "table.dat"))) for s in selections)
    if key in _engine.checked_measurement_sets:
        return
    table = casatools.table()
    has_column = {}
    for selection in selections:
        table.open(selection.path, nomodify=True)
        has_column[selection.path] = "WEIGHT_SPECTRUM" in table.colnames()
        table.close()
    if len(set(has_column.values())) > 1:
        without = ", ".join(path for path, present in has_column.items() if not present)
        raise CasaError(
            f"Imaging these MeasurementSets together would make CASA add a WEIGHT_SPECTRUM column to "
            f"{without}; radio_clean never modifies input data, so add the column to a copy first "
            "(e.g. with CASA's mstransform, usewtspectrum=True) and ingest that."
        )
    if len(_engine.checked_measurement_sets) >= 256:
        _engine.checked_measurement_sets.clear()
    _engine.checked_measurement_sets.add(key)


def _modification_time(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def _imager_parameters(selections: Sequence[MsSelection], imagename: str, parameters: Mapping[str, Any]):
    unknown = set(parameters) - set(tclean_defaults())
    if unknown:
        raise CasaError(f"Unknown tclean parameter(s): {', '.join(sorted(unknown))}.")
    tclean_parameters = {**tclean_defaults(), **parameters}
    tclean_parameters.update(
        vis=[s.path for s in selections] if len(selections) > 1 else selections[0].path,
        field=[s.field for s in selections] if len(selections) > 1 else selections[0].field,
        spw=[s.spw for s in selections] if len(selections) > 1 else selections[0].spw,
        imagename=imagename,
        selectdata=True,
        interactive=False,
        restart=True,
        savemodel="none",
        calcres=True,
        calcpsf=True,
        startmodel="",
        outlierfile="",
        psfphasecenter="",
        fullsummary=False,
        parallel=False,
    )
    _check_weight_spectrum(selections)
    return imager_parameters(tclean_parameters)


def _resolved(parameters: Mapping[str, Any]) -> dict[str, Any]:
    # File names the user gave are relative to where they are; the tools run in the workspace.
    parameters = dict(parameters)
    for name in ("mask", "vptable"):
        if parameters.get(name) and os.path.exists(parameters[name]):
            parameters[name] = os.path.abspath(parameters[name])
    return parameters


@contextlib.contextmanager
def _tools(selections: Sequence[MsSelection], workspace: Workspace, parameters: Mapping[str, Any]):
    # Fresh tools for one step in a scratch workspace of its own (make_psf).
    tools = SynthesisTools(_imager_parameters(selections, workspace.imagename, _resolved(parameters)))
    with casa_calls(workspace.directory):
        try:
            yield tools
        finally:
            tools.close()


@contextlib.contextmanager
def _fresh_tools(chain: Chain, workspace: Workspace, selections: Sequence[MsSelection], parameters):
    """Tools set up for this step only, in a workspace of the chain, with the chain's imager parameters."""
    tools = SynthesisTools(_chain_imager_parameters(chain, workspace, selections, parameters))
    with casa_calls(workspace.directory):
        try:
            yield tools
        finally:
            tools.close()


def _chain_imager_parameters(
    chain: Chain, workspace: Workspace, selections: Sequence[MsSelection], parameters: Mapping[str, Any]
):
    # ImagerParameters depends on the parameters and the image name only (restart=True: no
    # looking at images on disk), so one per set of parameters serves every call of the chain.
    return chain.imager_parameters(
        workspace,
        value_digest(dict(parameters)),
        lambda: _imager_parameters(selections, workspace.imagename, parameters),
    )


def make_psf(
    selections: Sequence[MsSelection], parameters: Mapping[str, Any], *, weight_density: bool = False
) -> dict[str, RadioImage]:
    """Make the PSF, primary beam and sums of weights, and fit the restoring beam.

    Parameters
    ----------
    selections : `~collections.abc.Sequence` [`MsSelection`]
        The MeasurementSets (read-only) and their field/spw selections.
    parameters : `~collections.abc.Mapping`
        tclean parameters by name; unset ones take tclean's defaults.
    weight_density : `bool`, optional
        Also return the gridded weight density of all the MSs, from which
        briggs and uniform weights are computed (``gridwt``), so that
        major cycles of each MS alone weight as all of them together.

    Returns
    -------
    images : `dict` [`str`, `RadioImage`]
        ``psf``, ``pb``, ``sumwt`` and, where CASA makes them, ``weight``
        (``psf.tt0``... for mtmfs), and ``gridwt`` if asked for. The PSF
        carries the fitted beam.

    Notes
    -----
    Without ``weight_density``, the synthesisimager that made the PSF, with
    the data selected and the imaging weights made, is kept with its images
    for the major cycles of the same chain (see `run_major_cycle`).
    """
    if weight_density:
        # Its imager weighed the data for the density; major cycles of partitions set up their own.
        with scratch_workspace() as workspace, _tools(selections, workspace, parameters) as tools:
            imager, normalizer, deconvolver = tools.imager(), tools.normalizer(), tools.deconvolver()
            imager.getweightdensity()
            make_psf_images(parameters, imager, normalizer, deconvolver)
            tools.close()
            images = workspace.get(["psf", "pb", "sumwt", "weight"])
            # Natural weighting has no density.
            if os.path.exists(workspace.path("gridwt")):
                images["gridwt"] = _read_weight_density(workspace.path("gridwt"))
            return images
    parameters = _resolved(parameters)
    with _engine.new_chain() as chain:
        workspace = chain.imaging
        imager_parameters = _chain_imager_parameters(chain, workspace, selections, parameters)
        imager_tools, step_tools = SynthesisTools(imager_parameters), SynthesisTools(imager_parameters)
        with casa_calls(workspace.directory):
            try:
                imager = imager_tools.imager()
                make_psf_images(parameters, imager, step_tools.normalizer(), step_tools.deconvolver())
                step_tools.close()
                # Written out, so that the files on disk are what the tools see.
                imager.unlockimages(0)
            except BaseException:
                step_tools.close()
                imager_tools.close()
                raise
        images = workspace.get(["psf", "pb", "sumwt", "weight"])
        # The imager goes on to the major cycles of this chain, with CASA's images of what it
        # returns, as tclean's does (tests/test_warm_engine.py checks that this gives the bits
        # that a set-up from the returned images gives).
        live = _ChainImager(_imager_key(parameters, None), imager_tools, workspace.directory, imager)
        chain.kept["imager"] = live
        if live.kept:
            for kind, image in images.items():
                workspace.adopt(kind, image)
        else:
            chain.drop("imager")
        _engine.add_chain(chain, selections, parameters, images)
        return images


class _ChainImager:
    """A synthesisimager kept for a chain: data selected, image defined, imaging weights made.

    Parameters
    ----------
    key : `str`
        Digest of what it was set up with (tclean parameters, weight density).
    tools : `SynthesisTools`
        The tools, the imager among them.
    directory : `str`
        Its workspace directory (CASA's scratch tables for the imaging weights are there).
    """

    def __init__(self, key: str, tools: SynthesisTools, directory: str, imager: Any = None) -> None:
        self.key = key
        self.directory = directory
        self.calls = 0
        """Major cycles run."""
        self._tools = tools
        self.parameters = tools.parameters
        """Its ImagerParameters."""
        self.imager = imager if imager is not None else tools.imager()
        grid = tools.parameters.getGridPars()["0"]
        self.kept = grid["gridder"] in _KEPT_IMAGER_GRIDDERS and grid.get("facets", 1) == 1
        """Whether it is kept for the next call (only for gridders where that gives the same bits)."""

    def tools(self) -> list[Any]:
        return self._tools.tools()

    def close(self) -> None:
        with casa_calls(self.directory):
            self._tools.close()


# Gridders whose synthesisimager, kept between major cycles, gives the bits a fresh one gives
# (checked by tests/test_warm_engine.py). With the mosaic gridder a kept imager's residuals
# differ from a fresh one's at 1e-4 of the peak, so the others get a fresh imager every call.
_KEPT_IMAGER_GRIDDERS = frozenset({"standard", "wproject"})


def _chain_imager(
    chain: Chain,
    selections: Sequence[MsSelection],
    parameters: Mapping[str, Any],
    images: Mapping[str, RadioImage],
    density: RadioImage | None,
) -> _ChainImager:
    """The chain's synthesisimager, with ``images`` in its workspace."""
    workspace = chain.imaging
    key = _imager_key(parameters, density)
    live = chain.kept.get("imager")
    if live is not None and (
        live.key != key
        # An image the imager holds open cannot be replaced, only have its pixels rewritten; the
        # residual of the last call stays, the imager overwrites it.
        or not workspace.update_in_place(
            images,
            may_rewrite=lambda kind: kind_base(kind) == "model",
            may_stay=lambda kind: kind_base(kind) == "residual",
        )
    ):
        chain.drop("imager")
        live = None
    if live is not None:
        return live
    # A new imager starts from freshly written images, as in a fresh process.
    workspace.forget(workspace.kinds())
    workspace.sync(images)
    imager_parameters = _chain_imager_parameters(chain, workspace, selections, parameters)
    with casa_calls(workspace.directory):
        live = _ChainImager(key, SynthesisTools(imager_parameters), workspace.directory)
    chain.kept["imager"] = live
    return live


def _imager_key(parameters: Mapping[str, Any], density: RadioImage | None) -> str:
    # What a synthesisimager is set up with: the tclean parameters and the weight density.
    density_digest = None if density is None else _engine.images_digest({"gridwt": density})
    return value_digest([value_digest(dict(parameters)), density_digest])


def _check_constants_after(chain: Chain, kinds: Sequence[str], first_call: bool) -> None:
    # The images every cycle shares must come out of a cycle as they went in, or the next
    # cycle would not see what a fresh set-up sees. On its first call CASA's imager notes
    # things in their headers (useweightimage in the sumwt's miscinfo), as it does in every
    # fresh set-up before it reads them; that is taken as their state, a change of pixels never.
    workspace = chain.imaging
    written = workspace.written_files(kinds)
    now = workspace.files_now(list(written))
    changed = [kind for kind in written if now.get(kind) != written[kind]]
    if not changed:
        return
    if first_call and all(now[kind].pixels == written[kind].pixels for kind in changed):
        workspace.accept_files(changed)
        return
    chain.drop("imager")
    workspace.forget(workspace.kinds())


def run_major_cycle(
    selections: Sequence[MsSelection],
    parameters: Mapping[str, Any],
    images: Mapping[str, RadioImage],
    *,
    normalize: bool = True,
) -> dict[str, RadioImage]:
    """Predict the model, grid the residual visibilities and normalize: one major cycle.

    Parameters
    ----------
    selections : `~collections.abc.Sequence` [`MsSelection`]
        The MeasurementSets (opened read-only; no model column is written).
    parameters : `~collections.abc.Mapping`
        tclean parameters by name.
    images : `~collections.abc.Mapping` [`str`, `RadioImage`]
        ``psf``, ``pb``, ``sumwt`` (and ``weight``) from `make_psf`, and the
        current ``model`` (absent for the dirty image). With ``gridwt``
        (the weight density of all MSs) the visibilities are weighted with
        it instead of their own.
    normalize : `bool`, optional
        If `False`, return the gridded residual before it is divided by the
        sum of weights: one partition's share, for `normalize_residual`.
        Its reference frequency is the PSF's (that of all partitions).

    Returns
    -------
    residuals : `dict` [`str`, `RadioImage`]
        ``residual`` (``residual.tt0``... for mtmfs).

    Notes
    -----
    The synthesisimager (data selection, image definition, imaging weights:
    a pass over the visibilities) of the chain's `make_psf` or first major
    cycle is kept for the next call, as tclean keeps it between major
    cycles; the model's pixels are written into the image it holds open.
    Not with the mosaic, awproject... gridders: a kept imager of those gives
    other bits than a fresh one, so they get a fresh one every call.
    """
    density = images.get("gridwt")
    images = {kind: image for kind, image in images.items() if kind != "gridwt"}
    parameters = _resolved(parameters)
    chain_parameters = parameters
    if not normalize and not parameters.get("reffreq"):
        # A partition's own data would give its image another reference frequency (the
        # middle of its band in LSRK at its times); use that of all partitions.
        psf = images.get("psf", images.get("psf.tt0"))
        parameters = {**parameters, "reffreq": f"{float(psf.frequencies[0])!r}Hz"}
    with _engine.warm_chain(selections, chain_parameters, images) as chain:
        live = _chain_imager(chain, selections, parameters, images, density)
        first_call = live.calls == 0
        workspace = chain.imaging
        tools = SynthesisTools(live.parameters)
        with casa_calls(workspace.directory):
            try:
                imager, normalizer = live.imager, tools.normalizer()
                if density is not None and first_call:
                    # As CASA's parallel continuum imaging does on each node: weigh this partition's
                    # data first (CASA refuses a density for data it has not weighed), then replace
                    # its density by that of all partitions.
                    imager.getweightdensity()
                    joint_density = os.path.join(workspace.directory, "all.gridwt")
                    _write_weight_density(density, joint_density)
                    imager.setweightdensity(joint_density)
                faceted = _faceted(tools.parameters)
                if divides_in_python(parameters) and faceted and _uses_weight_image(images):
                    raise CasaError(
                        "facets > 1 with a gridder that normalizes by a weight image (mosaic, "
                        "awproject) is not supported; set facets=1."
                    )
                run_major_cycle_calls(
                    parameters,
                    imager,
                    normalizer,
                    usemask=tools.parameters.getDecPars()["0"]["usemask"],
                    divide_model=not faceted,
                    normalize=normalize,
                )
            finally:
                tools.close()
            # Written out, so that the files on disk are what the tools see.
            imager.unlockimages(0)
        live.calls += 1
        residuals = workspace.get(["residual"])
        if live.kept:
            constants = [kind for kind in images if kind_base(kind) in _engine.CONSTANT_KINDS]
            _check_constants_after(chain, constants, first_call)
        else:
            chain.drop("imager")
        return residuals


def _faceted(imager_parameters) -> bool:
    # With facets a normalizer divides the model facet by facet, through image stores it makes
    # when it gathers the PSF or a residual. tclean's normalizer lives from the PSF on; a fresh
    # one has none and dividemodelbyweight dereferences a null facet store (a segfault).
    # Faceted gridders (widefield) use no weight image, so the division would change nothing.
    return imager_parameters.getGridPars()["0"].get("facets", 1) > 1


def _uses_weight_image(images: Mapping[str, RadioImage]) -> bool:
    # CASA's own note in the sumwt header (see _engine.SYNTHESIS_HEADER_KEYS).
    sumwt = images.get("sumwt", images.get("sumwt.tt0"))
    return sumwt is not None and bool(sumwt.provenance.get("useweightimage", False))


# The weight density's image header (CASA "miscinfo") holds the Briggs scale factors and
# which MS/field each density plane belongs to; CASA cannot use the density without them.
_MISCINFO_KEY = "casa.miscinfo"


def _read_weight_density(path: str) -> RadioImage:
    tool = casatools.image()
    tool.open(path)
    miscinfo = tool.miscinfo()
    tool.close()
    as_json = {
        key: value.tolist() if isinstance(value, np.ndarray) else value for key, value in miscinfo.items()
    }
    return read_casa_image(path).replace(provenance={_MISCINFO_KEY: json.dumps(as_json)})


def _write_weight_density(image: RadioImage, path: str) -> None:
    write_casa_image(image.replace(provenance={}), path, overwrite=True)
    miscinfo = json.loads(image.provenance[_MISCINFO_KEY])
    tool = casatools.image()
    tool.open(path)
    # JSON turned CASA's arrays (f2, d2) into lists; CASA wants them back as arrays.
    tool.setmiscinfo(
        {key: np.array(value) if isinstance(value, list) else value for key, value in miscinfo.items()}
    )
    tool.close()


def normalize_residual(
    selections: Sequence[MsSelection], parameters: Mapping[str, Any], images: Mapping[str, RadioImage]
) -> dict[str, RadioImage]:
    """Divide a gathered residual by the sum of weights, as the end of a major cycle does.

    Parameters
    ----------
    selections : `~collections.abc.Sequence` [`MsSelection`]
        The MeasurementSets (for the image definition only; not read).
    parameters : `~collections.abc.Mapping`
        tclean parameters by name.
    images : `~collections.abc.Mapping` [`str`, `RadioImage`]
        ``psf``, ``pb``, ``sumwt`` (and ``weight``) of all partitions from
        `make_psf`, and ``residual`` (``residual.tt0``...): the sum of the
        partitions' residuals from ``run_major_cycle(..., normalize=False)``.

    Returns
    -------
    residuals : `dict` [`str`, `RadioImage`]
        The normalized ``residual`` (``residual.tt0``... for mtmfs).
    """
    parameters = _resolved(parameters)
    with _engine.warm_chain(selections, parameters, images) as chain:
        workspace = chain.deconvolution
        workspace.sync(images)
        with _fresh_tools(chain, workspace, selections, parameters) as tools:
            normalizer = tools.normalizer()
            normalizer.gatherresidual()
            normalizer.divideresidualbyweight()
        return workspace.get(["residual"])


def _add_pblimit_mask(workspace: Workspace, pblimit: float) -> None:
    # CASA's normalizer gives the PB and residual a pixel mask where the PB is below pblimit,
    # and its auto-multithresh needs it; images that travelled as RadioImages have none.
    image = casatools.image()
    kinds = workspace.kinds()
    pb_kind = "pb.tt0" if "pb.tt0" in kinds else "pb"
    for kind in kinds:
        if kind.split(".")[0] in ("residual", "pb"):
            image.open(workspace.path(kind))
            image.calcmask(f"'{workspace.path(pb_kind)}' > {pblimit}", name="mask0")
            image.close()


def update_mask(
    parameters: Mapping[str, Any], images: Mapping[str, RadioImage], selections: Sequence[MsSelection]
) -> RadioImage:
    """Make the clean mask for the next minor cycle with CASA's mask handler.

    Exact for masks that do not depend on earlier cycles (user masks, pb
    masks, no mask). For auto-multithresh, CASA keeps state in memory
    between cycles that a fresh tool does not have, so from the second
    cycle on its masks can differ from tclean's. (The deconvolver is set
    up afresh in every call, warm engine or not, so that the masks do not
    depend on which calls ran before in the process.)

    Parameters
    ----------
    parameters : `~collections.abc.Mapping`
        tclean parameters by name (usemask, mask, pbmask, auto-multithresh...).
    images : `~collections.abc.Mapping` [`str`, `RadioImage`]
        ``psf``, ``pb``, ``sumwt``, the current ``residual``, ``model`` and
        the previous ``mask`` if there is one.
    selections : `~collections.abc.Sequence` [`MsSelection`]
        The MeasurementSets (for the image definition only; not read).

    Returns
    -------
    mask : `RadioImage`
        1 where the minor cycle may clean, 0 elsewhere.
    """
    parameters = _resolved(parameters)
    chain_parameters = parameters
    if "mask" in images:
        # The previous mask goes on from the image; CASA refuses a mask specification on top of it.
        parameters = {**parameters, "mask": ""}
    with _engine.warm_chain(selections, chain_parameters, images) as chain:
        workspace = chain.deconvolution
        workspace.sync(images)
        with _fresh_tools(chain, workspace, selections, parameters) as tools:
            pblimit = tools.parameters.getNormPars()["0"]["pblimit"]
            if pblimit > 0:
                _add_pblimit_mask(workspace, pblimit)
            deconvolver = tools.deconvolver()
            deconvolver.checkrestoringbeam()
            # A fresh deconvolver must load its images before it can make a mask.
            deconvolver.initminorcycle()
            deconvolver.setupmask()
        masks = workspace.get(["mask"])
    if "mask" not in masks:
        raise CasaError("CASA made no mask image; check usemask and mask.")
    return masks["mask"]


def psf_sidelobe_level(
    parameters: Mapping[str, Any], images: Mapping[str, RadioImage], selections: Sequence[MsSelection]
) -> float:
    """Return the PSF's largest sidelobe relative to its peak, as CASA's deconvolver measures it.

    Parameters
    ----------
    parameters : `~collections.abc.Mapping`
        tclean parameters by name.
    images : `~collections.abc.Mapping` [`str`, `RadioImage`]
        ``psf``, ``pb``, ``sumwt`` and a ``residual``.
    selections : `~collections.abc.Sequence` [`MsSelection`]
        The MeasurementSets (for the image definition only; not read).

    Notes
    -----
    CASA computes the level from the PSF alone; it is measured once per
    chain (parameters and PSF) and kept, as tclean's deconvolver keeps it.
    """
    parameters = _resolved(parameters)
    with _engine.warm_chain(selections, parameters, images) as chain:
        levels = chain.kept.setdefault("psf_sidelobe_level", {})
        key = value_digest(parameters)
        if key not in levels:
            workspace = chain.deconvolution
            workspace.sync(images)
            with _fresh_tools(chain, workspace, selections, parameters) as tools:
                record = tools.deconvolver().initminorcycle()
            levels[key] = float(record["maxpsfsidelobe"])
        return levels[key]


def _to_plain(value: Any) -> Any:
    """Turn a casatools record into YAML/JSON-safe values (arrays tagged for the way back)."""
    if isinstance(value, dict):
        return {key: _to_plain(item) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype), "shape": list(value.shape)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [_to_plain(item) for item in value]
    return value


def _from_plain(value: Any) -> Any:
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return np.array(value["__ndarray__"], dtype=value["dtype"]).reshape(value["shape"])
        return {key: _from_plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_from_plain(item) for item in value]
    return value


@dataclasses.dataclass
class IterationHistory:
    """What tclean's iteration controller has been told so far, cycle by cycle.

    ``cycles[i]`` holds the records of minor cycle ``i + 1``: ``inits`` (the
    peak-residual/mask records merged before it; two in the first cycle,
    before and after the first mask), ``controls`` (what the controller told
    the minor cycle: cycle threshold, cycle iterations, whether the global
    threshold was reached) and ``exec`` (what the minor cycle did).
    Replaying them into a new iterbotsink gives the controller tclean's
    exact state. Stored as plain data in the per-cycle summary.
    """

    cycles: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    stopcode: int = 0
    stopped: bool = False
    """CLEAN has stopped, for whatever reason (``stopcode`` says which)."""

    def to_dict(self) -> dict[str, Any]:
        return {"cycles": _to_plain(self.cycles), "stopcode": self.stopcode, "stopped": self.stopped}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IterationHistory:
        return cls(
            cycles=list(data.get("cycles", [])),
            stopcode=int(data["stopcode"]),
            # "converged" in summaries written before 2026-12: it meant stopped.
            stopped=bool(data["stopped"] if "stopped" in data else data["converged"]),
        )

    def replay(self, iteration_parameters: Mapping[str, Any]) -> IterationController:
        """Return an iteration controller in the state tclean's would have now."""
        return IterationController.replay(
            iteration_parameters,
            (
                {"inits": [_from_plain(init) for init in cycle["inits"]], "exec": _from_plain(cycle["exec"])}
                for cycle in self.cycles
            ),
        )


@dataclasses.dataclass
class MinorCycleResult:
    """What one call of `run_minor_cycle` decided and made."""

    history: IterationHistory
    """The history including this cycle (``stopped`` and ``stopcode`` set if CLEAN stopped)."""
    models: dict[str, RadioImage]
    """``model`` (``model.tt0``... for mtmfs) after this cycle; the input model if nothing was done."""
    summary: dict[str, Any]
    """tclean's iteration summary now: iterdone, nmajordone, stopcode, peak residual, cyclethreshold."""


def run_minor_cycle(
    parameters: Mapping[str, Any],
    images: Mapping[str, RadioImage],
    history: IterationHistory,
    selections: Sequence[MsSelection],
) -> MinorCycleResult:
    """Check whether CLEAN stops as tclean does and, if not, run one minor cycle.

    Parameters
    ----------
    parameters : `~collections.abc.Mapping`
        tclean parameters by name.
    images : `~collections.abc.Mapping` [`str`, `RadioImage`]
        ``psf``, ``pb``, ``sumwt``, current ``residual`` and ``model`` (absent
        before the first cycle) and this cycle's ``mask``.
    history : `IterationHistory`
        The iteration controller's records from earlier cycles.
    selections : `~collections.abc.Sequence` [`MsSelection`]
        The MeasurementSets (for the image definition only; not read).

    Returns
    -------
    result : `MinorCycleResult`
        The new model, the updated history and tclean's summary.

    Notes
    -----
    The deconvolver and the iteration controller are set up afresh in every
    call, warm engine or not. A deconvolver kept from an earlier cycle
    reports other records (``masksum`` -1 for a mask it has seen, the
    ``nsigma`` of the last cycle), so the history would differ. casatools
    keeps the iterbotsink's state per process, not per tool (a second
    ``setupiteration`` is ignored, ``done`` on any resets it), so a kept one
    would mix with other chains' and tclean's; the replay costs about a
    millisecond.
    """
    history = IterationHistory(cycles=list(history.cycles))
    first_cycle = not history.cycles
    parameters = _resolved(parameters)
    chain_parameters = parameters
    if "mask" in images:
        # The mask image is this cycle's mask; CASA refuses a mask specification on top of it.
        parameters = {**parameters, "mask": ""}
    without_mask = {kind: image for kind, image in images.items() if kind != "mask"}
    inits = []
    with _engine.warm_chain(selections, chain_parameters, images) as chain:
        workspace = chain.deconvolution
        # A mask from the cycle before may stay: its pixels are rewritten below, before it is read.
        workspace.sync(without_mask, may_stay=("mask",) if "mask" in images and not first_cycle else ())
        iteration_parameters = _chain_imager_parameters(
            chain, workspace, selections, parameters
        ).getIterPars()
        nmajor = iteration_parameters["nmajor"]
        reached_nmajor = nmajor >= 0 and len(history.cycles) >= nmajor
        controller = history.replay(iteration_parameters)
        try:
            with _fresh_tools(chain, workspace, selections, parameters) as tools:
                if first_cycle:
                    # tclean checks convergence once before making the first mask.
                    inits.append(tools.deconvolver().initminorcycle())
                    controller.merge_init(inits[-1], reached_major_limit=reached_nmajor)
                    tools.close()
                if "mask" in images:
                    workspace.put("mask", images["mask"])
                deconvolver = tools.deconvolver()
                inits.append(deconvolver.initminorcycle())
                stopcode = controller.merge_init(inits[-1], reached_major_limit=reached_nmajor)
                models: dict[str, RadioImage] = {}
                if stopcode > 0:
                    if iteration_parameters["niter"] == 0:
                        stopcode = ZERO_ITERATIONS_STOP_CODE  # as tclean's summary has it
                    history.stopped, history.stopcode = True, int(stopcode)
                else:
                    controls = controller.minor_cycle_controls()
                    executed = deconvolver.executeminorcycle(iterbotrecord=controls)
                    controller.merge_exec(executed)
                    history.cycles.append(
                        {
                            "inits": _to_plain(inits),
                            "controls": _to_plain(controls),
                            "exec": _to_plain(executed),
                        }
                    )
                    if executed["iterdone"] == 0:
                        # tclean stops when a minor cycle does nothing (e.g. an empty mask).
                        history.stopped = True
                        history.stopcode = int(controller.stop_code(reached_major_limit=reached_nmajor))
                    tools.close()
                    models = workspace.get(["model"])
                summary = _summary(controller.summary(), history)
        finally:
            controller.done()
    if not models:
        models = {kind: image for kind, image in images.items() if kind.split(".")[0] == "model"}
    return MinorCycleResult(history=history, models=models, summary=summary)


def _summary(iteration_summary: Mapping[str, Any], history: IterationHistory) -> dict[str, Any]:
    peak_residuals = [float(cycle["inits"][-1]["peakresidual"]) for cycle in history.cycles]
    # The controls of the last minor cycle run: the iteration summary's own cyclethreshold is
    # reset to 0 once the minor cycle's record is merged.
    controls = history.cycles[-1].get("controls", {}) if history.cycles else {}
    return {
        "iterdone": int(iteration_summary["iterdone"]),
        "nmajordone": int(iteration_summary["nmajordone"]),
        "stopcode": history.stopcode,
        "stop_reason": STOP_REASONS.get(history.stopcode, "unknown"),
        "stopped": history.stopped,
        "converged": history.stopped and history.stopcode in CONVERGED_STOP_CODES,
        "peak_residual_before_cycle": peak_residuals,
        "cyclethreshold": float(controls.get("cyclethreshold", 0.0)),
        "thresholdreached": bool(controls.get("thresholdreached", False)),
        "threshold": float(iteration_summary.get("threshold", 0.0)),
    }


def restore_images(
    parameters: Mapping[str, Any], images: Mapping[str, RadioImage], selections: Sequence[MsSelection]
) -> dict[str, RadioImage]:
    """Restore the model with the beam and, if ``pbcor``, divide by the primary beam.

    Parameters
    ----------
    parameters : `~collections.abc.Mapping`
        tclean parameters by name (restoringbeam, pbcor, pblimit...).
    images : `~collections.abc.Mapping` [`str`, `RadioImage`]
        ``psf``, ``pb``, ``sumwt``, final ``residual`` and ``model``.
    selections : `~collections.abc.Sequence` [`MsSelection`]
        The MeasurementSets (for the image definition only; not read).

    Returns
    -------
    images : `dict` [`str`, `RadioImage`]
        ``image`` (and ``image.pbcor``; for mtmfs ``image.tt0``...,
        ``alpha``, ``alpha.error``).
    """
    parameters = _resolved(parameters)
    with _engine.warm_chain(selections, parameters, images) as chain:
        workspace = chain.deconvolution
        workspace.sync(images)
        with _fresh_tools(chain, workspace, selections, parameters) as tools:
            deconvolver = tools.deconvolver()
            deconvolver.restore()
            if parameters.get("pbcor", False):
                deconvolver.pbcor()
        restored = workspace.get(["image", "alpha"])
        # Restoring is a chain's last step: its imager's memory is freed before the figures are drawn.
        _engine.retire(chain)
        return restored
