"""Test support: calibrated HI data of NGC 5921, prepared with casatasks from casadata's raw VLA UVFITS.

Not part of radio_clean: the cube tests and the imaging benchmark (``bench/``)
use it to make a realistic spectral-line MS from what casadata ships.

casadata ships ``demo/NGC5921.fits``: a VLA D-configuration HI observation at
1.413 GHz, 63 channels in the LSRK frame, RR and LL, NOT calibrated, with three
fields:

=====  ===================  =========================================
field  name                 role
=====  ===================  =========================================
0      ``1331+30500002_0``  flux density and bandpass calibrator 3C286
1      ``1445+09900002_0``  phase (gain) calibrator
2      ``N5921_2``          the target, the spiral galaxy NGC 5921
=====  ===================  =========================================

`prepare_ngc5921` follows CASA's classic NGC5921 tutorial to turn it into
MeasurementSets ready for cube imaging. This is data preparation, not imaging,
so casatasks does the work:

1. ``ms.fromfits`` with ``antnamescheme="new"`` into the scratch directory, so
   that the VLA antennas have the tutorial's names ``VA01`` ... ``VA28``
   (`radio_clean.demo` keeps the UVFITS file's bare numbers ``1`` ... ``28``)
   and no ``NGC5921.ms`` of the user's is modified.
2. ``flagdata``: the autocorrelations, and the first and last channels
   (0 and 62). Channel 0 is bad on every baseline, calibrators included (after
   calibration its amplitudes on the target are 16 times the noise of the band
   centre), and channel 62, at the edge of the bandpass roll-off, has 6 times
   the band-centre noise.
3. ``setjy`` on 3C286 with the Perley-Butler 2017 standard: 15.02 Jy at
   1.4134 GHz, a point source at the resolution of D configuration at 21 cm.
   It runs offline: the standard's coefficients are in casadata
   (``nrao/VLA/standards/PerleyButler2017Coeffs``); no model image is needed.
4. ``bandpass`` on 3C286: ``solint="inf"``, ``combine="scan"``, ``refant="VA15"``,
   normalised so that the flux scale lives in the gain table.
5. ``gaincal`` on 3C286 and the phase calibrator: ``gaintype="G"``,
   ``calmode="ap"``, ``solint="inf"`` (one solution per scan), channels 3-59,
   bandpass applied.
6. ``fluxscale``: transfers the flux scale of 3C286 to the phase calibrator
   and returns its derived flux density (about 2.53 Jy).
7. ``applycal`` to the target: the flux-scaled gains of the phase calibrator
   (interpolated linearly in time between its scans, which bracket the
   target's) and the bandpass, leaving the visibility weights as the UVFITS
   file gives them (``calwt=False``).
8. ``split`` of the target's corrected data into the calibrated MS (63
   channels, one field, the calibrated visibilities in ``DATA``).
9. Optionally ``uvcontsub``: a zeroth-order fit per baseline over the line-free
   channels 4-6 and 50-59, subtracted, into the line MS.

Everything is made in a hidden temporary directory inside the target directory
and renamed into place when complete; the summary file
``NGC5921.prepare.json`` is renamed last and marks a finished run, so an
interrupted run never leaves outputs that look finished. casadata's files are
only read.
"""

from __future__ import annotations

__all__ = [
    "CALIBRATED_MS_NAME",
    "LINE_FREE_CHANNELS",
    "LINE_MS_NAME",
    "NGC5921_FIELDS",
    "SUMMARY_NAME",
    "PreparedData",
    "prepare_ngc5921",
]

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

from radio_clean.casa import (
    CasaError,
    casa_log_forwarded,
    casatools,
    forward_casa_log,
    reattach_casa_log,
    set_up_casa,
)
from radio_clean.demo import DEMO_DATASETS

_log = logging.getLogger(__name__)
_casa_log = logging.getLogger("radio_clean.casa")

CALIBRATED_MS_NAME = "NGC5921.calibrated.ms"
"""File name of the calibrated target MeasurementSet."""
LINE_MS_NAME = "NGC5921.line.ms"
"""File name of the continuum-subtracted target MeasurementSet."""
SUMMARY_NAME = "NGC5921.prepare.json"
"""File name of the summary written last; its presence marks a finished run."""

NGC5921_FIELDS = {
    "flux_calibrator": "1331+30500002_0",
    "phase_calibrator": "1445+09900002_0",
    "target": "N5921_2",
}
"""Field names in ``demo/NGC5921.fits`` (field ids 0, 1 and 2), by role."""

LINE_FREE_CHANNELS = "0:4~6;50~59"
"""Channels free of HI emission from NGC 5921, as in CASA's tutorial (spw:chan)."""

# Everything this module writes into the target directory, the summary (the mark of a
# finished run) first: in this order old outputs are moved away.
_OUTPUT_NAMES = (SUMMARY_NAME, CALIBRATED_MS_NAME, LINE_MS_NAME)

# The recipe, in one place so that the summary file can record it.
_RECIPE: dict[str, Any] = {
    "flag_channels": "0:0;62",
    "setjy_standard": "Perley-Butler 2017",
    "refant": "VA15",
    "gaincal_spw": "0:3~59",
    "fitspec": LINE_FREE_CHANNELS,
    "fitorder": 0,
}
# Bump when the recipe changes, so that outputs made by an older one are remade.
_RECIPE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class PreparedData:
    """Result of `prepare_ngc5921`: where the data are and what calibration found."""

    calibrated_ms: str
    """Absolute path of the calibrated target MS (63 channels, field ``N5921_2``)."""
    line_ms: str | None
    """Absolute path of the continuum-subtracted target MS, or `None` if not made."""
    phase_calibrator_flux: float
    """Flux density of the phase calibrator 1445+09900002_0 from ``fluxscale`` (Jy)."""
    phase_calibrator_flux_error: float
    """Formal error of ``phase_calibrator_flux`` (Jy)."""
    flux_calibrator_flux: float
    """Flux density ``setjy`` gave 3C286 at the band centre (Jy, Stokes I)."""
    reference_frequency: float
    """Frequency at which the flux densities apply (Hz)."""

    def to_dict(self) -> dict[str, Any]:
        """Return the result as a JSON-compatible dictionary."""
        return dataclasses.asdict(self)


@contextlib.contextmanager
def _stdout_to_log() -> Iterator[None]:
    """Send what casatools' C++ code prints on standard output to the debug log.

    The calibration solvers print notes such as "Insufficient unflagged
    antennas to proceed with this solve" for every fully flagged channel
    straight to file descriptor 1; with the edge channels flagged on purpose
    they are expected, and only noise on a user's terminal.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 1)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines():
                if line.strip():
                    _casa_log.debug("%s", line.strip())


@contextlib.contextmanager
def _casatasks() -> Iterator[Any]:
    """Give casatasks with CASA's log going to radio_clean's forwarder."""
    set_up_casa()  # casatasks reads CASA's site configuration when imported
    try:
        import casatasks
    except Exception as err:
        raise CasaError(f"casatasks, needed to calibrate NGC5921, cannot be imported: {err}") from err
    # Importing casatasks made its casalog the global sink, writing to a file of its own.
    reattach_casa_log(casatasks.casalog)
    try:
        with casa_log_forwarded(), _stdout_to_log():
            yield casatasks
    finally:
        reattach_casa_log(casatasks.casalog)


class _CasaErrors(logging.Handler):
    """Keep the messages of CASA's log that reach Python logging as errors."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # The forwarder logs ("%s: %s", origin, message); keep the message.
        args = record.args
        message = str(args[-1]) if isinstance(args, tuple) and len(args) == 2 else record.getMessage()
        message = message.strip().removeprefix("Exception Reported:").strip()
        if message:
            self.messages.append(message)


def _step(description: str, task: Callable[..., Any], *, output: str | None = None, **kwargs: Any) -> Any:
    """Run one casatasks task; turn any failure into a `CasaError`.

    Some tasks (bandpass and gaincal among them) report a failure only in
    CASA's log and return `None`: a missing ``output`` then shows it, and the
    last SEVERE message of the log says why.
    """
    _log.info("NGC5921: %s.", description)
    start = time.perf_counter()
    errors = _CasaErrors()
    _casa_log.addHandler(errors)
    try:
        try:
            result = task(**kwargs)
        finally:
            forward_casa_log()
    except Exception as err:
        reason = str(err).strip() or (errors.messages[-1] if errors.messages else type(err).__name__)
        raise CasaError(f"Preparing NGC5921 failed at {description}: {reason.rstrip('.')}.") from err
    finally:
        _casa_log.removeHandler(errors)
    if result is False or (output is not None and not os.path.isdir(output)):
        reason = errors.messages[-1] if errors.messages else f"it wrote no {os.path.basename(output or '')}"
        raise CasaError(f"Preparing NGC5921 failed at {description}: {reason.rstrip('.')}.")
    _log.debug("NGC5921: %s took %.1f s.", description, time.perf_counter() - start)
    return result


def _check_fields(vis: str) -> None:
    """Check that the raw MS has the three fields the recipe selects by id."""
    metadata = casatools.msmetadata()
    try:
        with casa_log_forwarded():
            metadata.open(vis)
            names = list(metadata.fieldnames())
            nchan = int(metadata.nchan(0))
    except Exception as err:
        raise CasaError(f"Cannot read the fields of {vis}: {err}") from err
    finally:
        metadata.close()
    expected = list(NGC5921_FIELDS.values())
    if names != expected or nchan != 63:
        raise CasaError(
            f"{vis} has fields {names} and {nchan} channels, not the {expected} and 63 channels "
            "of casadata's NGC5921 that the calibration recipe is written for."
        )


def _convert(fits: str, vis: str) -> None:
    ms_tool = casatools.ms()
    try:
        with casa_log_forwarded():
            ok = ms_tool.fromfits(vis, fits, antnamescheme="new")
    except Exception as err:
        raise CasaError(f"casatools could not convert {fits} to a MeasurementSet: {err}") from err
    finally:
        ms_tool.close()
    if ok is False or not os.path.isdir(vis):
        raise CasaError(f"casatools could not convert {fits} to a MeasurementSet (see the CASA log).")


def _calibrate(scratch: str, *, continuum_subtract: bool) -> dict[str, Any]:
    """Run the whole recipe in ``scratch``; return the summary of what it made."""
    fits = DEMO_DATASETS["NGC5921"].resolve_fits()
    vis = os.path.join(scratch, "NGC5921.raw.ms")
    bandpass_table = os.path.join(scratch, "NGC5921.bcal")
    gain_table = os.path.join(scratch, "NGC5921.gcal")
    flux_table = os.path.join(scratch, "NGC5921.fluxscale")
    calibrated = os.path.join(scratch, CALIBRATED_MS_NAME)
    line = os.path.join(scratch, LINE_MS_NAME)
    phase_name = NGC5921_FIELDS["phase_calibrator"]

    _log.info("NGC5921: converting %s.", fits)
    _convert(fits, vis)
    _check_fields(vis)
    # Field ids, checked against the names above.
    flux_cal, phase_cal, target = "0", "1", "2"
    refant = _RECIPE["refant"]
    with _casatasks() as tasks:
        _step(
            "flagging the autocorrelations",
            tasks.flagdata,
            vis=vis,
            mode="manual",
            autocorr=True,
            flagbackup=False,
        )
        _step(
            "flagging the edge channels",
            tasks.flagdata,
            vis=vis,
            mode="manual",
            spw=_RECIPE["flag_channels"],
            flagbackup=False,
        )
        # MODEL_DATA in the scratch MS rather than a virtual model that split could carry along.
        setjy = _step(
            "setjy on 3C286",
            tasks.setjy,
            vis=vis,
            field=flux_cal,
            standard=_RECIPE["setjy_standard"],
            scalebychan=True,
            usescratch=True,
        )
        try:
            flux_calibrator_flux = float(setjy[flux_cal]["0"]["fluxd"][0])
        except (KeyError, IndexError, TypeError) as err:
            raise CasaError(f"setjy returned no flux density for 3C286 (it returned {setjy!r}).") from err
        _step(
            "bandpass on 3C286",
            tasks.bandpass,
            output=bandpass_table,
            vis=vis,
            caltable=bandpass_table,
            field=flux_cal,
            solint="inf",
            combine="scan",
            refant=refant,
            solnorm=True,
        )
        _step(
            "gaincal on both calibrators",
            tasks.gaincal,
            output=gain_table,
            vis=vis,
            caltable=gain_table,
            field=f"{flux_cal},{phase_cal}",
            spw=_RECIPE["gaincal_spw"],
            gaintype="G",
            calmode="ap",
            solint="inf",
            combine="",
            refant=refant,
            gaintable=[bandpass_table],
            interp=["nearest"],
        )
        fluxscale = _step(
            "fluxscale to the phase calibrator",
            tasks.fluxscale,
            output=flux_table,
            vis=vis,
            caltable=gain_table,
            fluxtable=flux_table,
            reference=[flux_cal],
            transfer=[phase_cal],
        )
        try:
            flux = float(fluxscale[phase_cal]["0"]["fluxd"][0])
            flux_error = float(fluxscale[phase_cal]["0"]["fluxdErr"][0])
            frequency = float(fluxscale["freq"][0])
        except (KeyError, IndexError, TypeError) as err:
            raise CasaError(
                f"fluxscale derived no flux density for {phase_name} (it returned {fluxscale!r})."
            ) from err
        if not flux > 0:
            raise CasaError(f"fluxscale derived a flux density of {flux} Jy for {phase_name}.")
        _log.info(
            "NGC5921: %s has %.4f +/- %.4f Jy at %.4f GHz (3C286: %.4f Jy).",
            phase_name,
            flux,
            flux_error,
            frequency / 1e9,
            flux_calibrator_flux,
        )
        _step(
            "applycal to the target",
            tasks.applycal,
            vis=vis,
            field=target,
            gaintable=[flux_table, bandpass_table],
            gainfield=[phase_cal, flux_cal],
            interp=["linear", "nearest"],
            calwt=[False, False],
            flagbackup=False,
        )
        _step(
            "split of the calibrated target",
            tasks.split,
            output=calibrated,
            vis=vis,
            outputvis=calibrated,
            field=target,
            datacolumn="corrected",
            keepflags=True,
        )
        if continuum_subtract:
            _step(
                "uvcontsub of the target",
                tasks.uvcontsub,
                output=line,
                vis=calibrated,
                outputvis=line,
                fitspec=_RECIPE["fitspec"],
                fitorder=_RECIPE["fitorder"],
                datacolumn="data",
            )

    return {
        "recipe_version": _RECIPE_VERSION,
        "recipe": _RECIPE,
        "source": DEMO_DATASETS["NGC5921"].fits_path,
        "casatools_version": casatools.version_string(),
        "calibrated_ms": CALIBRATED_MS_NAME,
        "line_ms": LINE_MS_NAME if continuum_subtract else None,
        "phase_calibrator_flux": flux,
        "phase_calibrator_flux_error": flux_error,
        "flux_calibrator_flux": flux_calibrator_flux,
        "reference_frequency": frequency,
    }


def _result(directory: str, summary: dict[str, Any]) -> PreparedData:
    return PreparedData(
        calibrated_ms=os.path.join(directory, summary["calibrated_ms"]),
        line_ms=os.path.join(directory, summary["line_ms"]) if summary["line_ms"] else None,
        phase_calibrator_flux=float(summary["phase_calibrator_flux"]),
        phase_calibrator_flux_error=float(summary["phase_calibrator_flux_error"]),
        flux_calibrator_flux=float(summary["flux_calibrator_flux"]),
        reference_frequency=float(summary["reference_frequency"]),
    )


def _finished(directory: str, *, continuum_subtract: bool) -> PreparedData | None:
    """Return the result of an earlier finished run that fits the request, if any."""
    path = os.path.join(directory, SUMMARY_NAME)
    try:
        with open(path) as stream:
            summary = json.load(stream)
        if summary.get("recipe_version") != _RECIPE_VERSION:
            return None
        result = _result(directory, summary)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        _log.warning("Ignoring the unreadable %s (%s); preparing NGC5921 again.", path, err)
        return None
    if continuum_subtract and result.line_ms is None:
        return None
    outputs = [result.calibrated_ms] + ([result.line_ms] if result.line_ms else [])
    if not all(os.path.isfile(os.path.join(ms, "table.dat")) for ms in outputs):
        return None
    return result


def _check_targets(targets: list[str]) -> None:
    """Refuse to replace anything that this module would not have written."""
    for target in targets:
        if not os.path.lexists(target):
            continue
        if target.endswith(".json"):
            ok = os.path.isfile(target) and not os.path.islink(target)
        else:
            ok = os.path.isfile(os.path.join(target, "table.dat")) and not os.path.islink(target)
        if not ok:
            kind = "summary file" if target.endswith(".json") else "MeasurementSet"
            raise CasaError(f"{target} exists but is not a {kind}; move it away or choose another directory.")


def _install(scratch: str, directory: str, names: list[str]) -> None:
    """Move ``names`` from ``scratch`` into ``directory``, the summary last.

    Whatever is already there under those names (and a line MS left by an
    earlier run) is moved into ``scratch`` first, the summary before anything
    else, so that at no moment does an incomplete set look finished.
    """
    replaced = os.path.join(scratch, "replaced")
    os.mkdir(replaced)
    for name in _OUTPUT_NAMES:
        target = os.path.join(directory, name)
        if os.path.lexists(target):
            _log.info("Replacing %s.", target)
            try:
                os.rename(target, os.path.join(replaced, name))
            except OSError as err:
                raise CasaError(f"Cannot move the old {target} out of the way ({err}).") from err
    for name in sorted(names, key=lambda name: name == SUMMARY_NAME):
        target = os.path.join(directory, name)
        try:
            os.rename(os.path.join(scratch, name), target)
        except OSError as err:
            raise CasaError(f"Cannot move the prepared {name} into place at {target} ({err}).") from err


def prepare_ngc5921(
    directory: str,
    *,
    overwrite: bool = False,
    continuum_subtract: bool = True,
) -> PreparedData:
    """Calibrate casadata's VLA HI observation of NGC 5921 for cube imaging.

    Converts ``demo/NGC5921.fits`` from casadata, calibrates it with
    casatasks as in CASA's NGC5921 tutorial (flagging, setjy, bandpass,
    gaincal, fluxscale, applycal; see the module documentation), splits the
    calibrated target into ``NGC5921.calibrated.ms`` and, optionally, subtracts
    the continuum into ``NGC5921.line.ms``. A summary with the derived flux
    densities is written to ``NGC5921.prepare.json``.

    Parameters
    ----------
    directory : `str`
        Directory to write into; created if missing.
    overwrite : `bool`, optional
        Redo the preparation and replace outputs that are already there.
        Otherwise the outputs of an earlier finished run are kept and
        returned (with the flux densities read from its summary).
    continuum_subtract : `bool`, optional
        Also make the continuum-subtracted line MS. If `False`, only the
        calibrated MS is made (an existing line MS is then kept, unless the
        preparation is redone, when it is removed).

    Returns
    -------
    prepared : `PreparedData`
        Paths of the MeasurementSets and the flux densities from ``setjy``
        and ``fluxscale``.

    Raises
    ------
    CasaError
        If the directory cannot be written, an output path is taken by
        something this function did not write, casadata lacks the UVFITS
        file, or a calibration step fails.

    Notes
    -----
    The work happens in a hidden ``.radio_clean-tmp-NGC5921-*`` directory
    inside ``directory`` and the results are renamed into place, the summary
    last; an interrupted run leaves at most that hidden directory (and, if
    interrupted while renaming, MeasurementSets without a summary, which the
    next call replaces). casadata's files are only read.
    """
    directory = os.path.abspath(directory)
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as err:
        raise CasaError(f"Cannot create the directory {directory} ({err.strerror or err}).") from err
    if not os.access(directory, os.W_OK | os.X_OK):
        raise CasaError(f"Cannot prepare NGC5921 in {directory}: the directory is not writable.")
    names = [CALIBRATED_MS_NAME] + ([LINE_MS_NAME] if continuum_subtract else []) + [SUMMARY_NAME]
    _check_targets(
        [os.path.join(directory, name) for name in (CALIBRATED_MS_NAME, LINE_MS_NAME, SUMMARY_NAME)]
    )
    if not overwrite:
        finished = _finished(directory, continuum_subtract=continuum_subtract)
        if finished is not None:
            _log.info("NGC5921 is already prepared in %s; keeping it (overwrite=True redoes it).", directory)
            return finished

    start = time.perf_counter()
    scratch = tempfile.mkdtemp(prefix=".radio_clean-tmp-NGC5921-", dir=directory)
    try:
        summary = _calibrate(scratch, continuum_subtract=continuum_subtract)
        with open(os.path.join(scratch, SUMMARY_NAME), "w") as stream:
            json.dump(summary, stream, indent=2)
            stream.write("\n")
        _install(scratch, directory, names)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _log.info("NGC5921 prepared in %s in %.1f s.", directory, time.perf_counter() - start)
    return _result(directory, summary)
