"""Parity of the CLEAN task chain with tclean, case by case.

Every case runs ``radio-clean image``'s code path (repository, ingest, the
CLEAN loop and its executor, through `clean_utils.run_clean`) and tclean with the same tclean
parameters on the same MeasurementSet, then compares restored image,
residual, model, PSF, primary beam, masks and iteration control (stop code,
iterations, major cycles).

xdist-safe: each case works in its own ``tmp_path`` (a private copy of the
MS, tclean's images, the working directory, where CASA drops TempLattice
files) and only copies the session's demo MS, so ``pytest -n N`` may run
the cases in any order on any worker.
"""

import dataclasses
import glob
import os
import shutil

import numpy as np
import pytest
from clean_utils import run_clean, tree_checksums

from radio_clean.casa import read_casa_image, read_ms_info, reattach_casa_log
from radio_clean.simulate import SkyComponent, simulate_ms

IMAGE_TOLERANCE = 1e-3
"""Largest |ours - tclean| of restored image, residual and model, as a fraction of tclean's image peak."""
BEAM_TOLERANCE = 1e-5
"""Largest |ours - tclean| of the PSF and the primary beam (both peak at 1)."""
USER_MASK = "circle[[64pix,64pix],12pix]"
"""A CASA region around 3C273's core (the image centre), radius 12 pixels."""

_3C273 = {"imsize": [128], "cell": ["1arcsec"], "niter": 300, "datacolumn": "data"}


@dataclasses.dataclass(frozen=True)
class Case:
    """One parity case: the data, tclean's parameters and (for auto-multithresh) the mask code."""

    data: str
    parameters: dict
    automask: str = "numpy"


CASES = {
    "3c273-hogbom-natural-nomask": Case("3c273", {**_3C273, "deconvolver": "hogbom", "weighting": "natural"}),
    "3c273-hogbom-briggs-wproject": Case(
        "3c273",
        {**_3C273, "deconvolver": "hogbom", "weighting": "briggs", "gridder": "wproject", "wprojplanes": 8},
    ),
    "3c273-clark-uniform-usermask": Case(
        "3c273", {**_3C273, "deconvolver": "clark", "weighting": "uniform", "mask": USER_MASK}
    ),
    # pbmask=0.9: the PB at the corners of this 128 arcsec image is 0.82, so the mask is a
    # proper part of the image (at 0.5 it would be the whole image and test nothing).
    "3c273-multiscale-briggs-pbmask": Case(
        "3c273",
        {
            **_3C273,
            "deconvolver": "multiscale",
            "scales": [0, 3, 8],
            "weighting": "briggs",
            "robust": 0.5,
            "usemask": "pb",
            "pbmask": 0.9,
        },
    ),
    "3c273-mtmfs-briggs-usermask": Case(
        "3c273",
        {
            **_3C273,
            "deconvolver": "mtmfs",
            "nterms": 2,
            "weighting": "briggs",
            "robust": 0.5,
            "mask": USER_MASK,
        },
    ),
    "3c273-mtmfs-natural-pbmask": Case(
        "3c273",
        {
            **_3C273,
            "deconvolver": "mtmfs",
            "nterms": 2,
            "weighting": "natural",
            "usemask": "pb",
            "pbmask": 0.9,
        },
    ),
    "3c273-hogbom-briggs-automask-numpy": Case(
        "3c273",
        {
            **_3C273,
            "deconvolver": "hogbom",
            "weighting": "briggs",
            "robust": 0.5,
            "usemask": "auto-multithresh",
        },
        automask="numpy",
    ),
    # minpercentchange >= 0: masking stops in a channel once the global threshold is reached and
    # the mask hardly changes, which needs the controller's thresholdreached of the cycle before.
    "3c273-hogbom-automask-minpercentchange": Case(
        "3c273",
        {
            **_3C273,
            "niter": 2000,
            "threshold": "20mJy",
            "deconvolver": "hogbom",
            "weighting": "briggs",
            "robust": 0.5,
            "usemask": "auto-multithresh",
            "minpercentchange": 10.0,
        },
        automask="numpy",
    ),
    "3c273-hogbom-briggs-automask-casatools": Case(
        "3c273",
        {
            **_3C273,
            "deconvolver": "hogbom",
            "weighting": "briggs",
            "robust": 0.5,
            "usemask": "auto-multithresh",
        },
        automask="casatools",
    ),
    # Six channels of 32 MHz, 16 arcsec cells: the PB falls below pblimit (0.2) in the corners.
    "sim-mtmfs-briggs-nomask": Case(
        "sim",
        {
            "imsize": [128],
            "cell": ["16arcsec"],
            "niter": 300,
            "datacolumn": "data",
            "deconvolver": "mtmfs",
            "nterms": 2,
            "weighting": "briggs",
            "robust": 0.5,
        },
    ),
}

_SIM_SKY = [
    SkyComponent(1.0, (0.0, 0.0), spectral_index=-0.7),
    SkyComponent(0.5, (-80.0, 120.0), spectral_index=0.5),
    SkyComponent(0.8, (160.0, -80.0), shape="gaussian", major_arcsec=60.0, minor_arcsec=40.0, pa_deg=30.0),
]


def _measurement_set(case, demo_ms_dir, directory):
    """A private MS for the case: (path, field, band)."""
    if case.data == "3c273":
        path = str(directory / "3C273XC1.ms")
        shutil.copytree(demo_ms_dir / "3C273XC1.ms", path)
        return path, "3C273", "8085MHz-1ch"
    sky = simulate_ms(
        str(directory / "sim.ms"),
        _SIM_SKY,
        array="vla.d",
        freq_start_hz=1.4e9,
        chan_width_hz=32e6,
        n_chan=6,
        hours=1.0,
        integration_s=60.0,
        noise_jy=0.2,
        seed=3,
    )
    info = read_ms_info(sky.path)
    return sky.path, info.fields[0].name, info.spectral_windows[0].band_name


def _run_tclean(vis, field, parameters, directory, environment):
    """Run tclean into ``directory``/img; return its summary. CASA's log goes back to radio_clean after."""
    from casatasks import casalog, tclean

    os.makedirs(directory)
    casalog.setlogfile(str(directory / "tclean.log"))
    saved = {key: os.environ.get(key) for key in environment}
    os.environ.update(environment)
    try:
        return tclean(vis=vis, imagename=str(directory / "img"), field=field, **parameters)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reattach_casa_log(casalog)


def _pixels(path):
    return read_casa_image(str(path)).pixels


def _difference(ours, theirs, scale):
    """Max |ours - theirs| / scale over finite pixels; inf if the NaNs are not in the same places."""
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    assert ours.shape == theirs.shape, f"shapes differ: {ours.shape} and {theirs.shape}"
    if not np.array_equal(np.isnan(ours), np.isnan(theirs)):
        return float("inf")
    finite = np.isfinite(theirs)
    return float(np.max(np.abs(ours[finite] - theirs[finite]), initial=0.0) / scale)


def _iou(a, b):
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


@pytest.mark.parametrize("name", list(CASES))
def test_parity_with_tclean(name, demo_ms_dir, tmp_path, monkeypatch, request):
    """Images, masks and iteration control of the task chain match tclean's; the MS is left untouched."""
    case = CASES[name]
    parameters = case.parameters
    mtmfs = parameters["deconvolver"] == "mtmfs"
    automask = parameters.get("usemask") == "auto-multithresh"
    monkeypatch.chdir(tmp_path)
    vis, field, band = _measurement_set(case, demo_ms_dir, tmp_path)

    before = tree_checksums(vis)
    ours = run_clean(
        [vis], parameters=parameters, directory=tmp_path / "ours", automask_implementation=case.automask
    )
    assert tree_checksums(vis) == before, "the task chain modified its input MeasurementSet"

    # tclean saves the mask of every auto-multithresh cycle with SAVE_ALL_AUTOMASKS.
    environment = {"SAVE_ALL_AUTOMASKS": "true"} if automask else {}
    summary = _run_tclean(vis, field, parameters, tmp_path / "tclean", environment)
    prefix = tmp_path / "tclean" / "img"
    tt0 = ".tt0" if mtmfs else ""
    theirs = {
        "image": _pixels(f"{prefix}.image{tt0}"),
        "residual": _pixels(f"{prefix}.residual{tt0}"),
        "model": _pixels(f"{prefix}.model{tt0}"),
        "psf": _pixels(f"{prefix}.psf{tt0}"),
        "pb": _pixels(f"{prefix}.pb{tt0}"),
        "mask": _pixels(f"{prefix}.mask") > 0.5,
    }
    peak = float(np.nanmax(np.abs(theirs["image"])))
    mine = {kind: ours[kind].pixels for kind in ("image", "residual", "model", "psf", "pb")}
    mine["mask"] = ours["mask"].pixels > 0.5
    if mtmfs:
        theirs |= {
            "image_tt1": _pixels(f"{prefix}.image.tt1"),
            "residual_tt1": _pixels(f"{prefix}.residual.tt1"),
            "model_tt1": _pixels(f"{prefix}.model.tt1"),
        }
        mine |= {
            "image_tt1": ours["image_tt1"].pixels,
            "residual_tt1": ours["residual_tt1"].pixels,
            "model_tt1": ours["model_tt1"].pixels,
        }

    measured = {
        kind: _difference(mine[kind], theirs[kind], peak)
        for kind in ("image", "residual", "model")
        + (("image_tt1", "residual_tt1", "model_tt1") if mtmfs else ())
    }
    measured |= {kind: _difference(mine[kind], theirs[kind], 1.0) for kind in ("psf", "pb")}
    if mtmfs:
        # The spectral index where the source is bright enough for it to mean something.
        bright = theirs["image"] > 0.05 * peak
        alpha = _pixels(f"{prefix}.alpha")
        measured["alpha"] = float(np.max(np.abs(ours["alpha"].pixels[bright] - alpha[bright])))
    ours_summary, tclean_summary = (
        ours["summary"],
        {k: int(summary[k]) for k in ("iterdone", "nmajordone", "stopcode")},
    )
    print(
        f"{name}: peak {peak:.6g}; "
        + ", ".join(f"{key} {value:.3g}" for key, value in measured.items())
        + f"; ours iterdone/nmajordone/stopcode {ours_summary['iterdone']}/{ours_summary['nmajordone']}/"
        f"{ours_summary['stopcode']}, tclean {tclean_summary['iterdone']}/{tclean_summary['nmajordone']}/"
        f"{tclean_summary['stopcode']}; mask pixels ours {int(mine['mask'].sum())} tclean "
        f"{int(theirs['mask'].sum())}"
    )

    # Collect every disagreement before failing, so that one report shows all of them.
    failures = []
    for key, value in measured.items():
        limit = BEAM_TOLERANCE if key in ("psf", "pb") else 1e-2 if key == "alpha" else IMAGE_TOLERANCE
        if not value <= limit:
            failures.append(f"{key}: max |ours - tclean| = {value:.3g} (limit {limit:g})")
    if ours_summary["stopcode"] != tclean_summary["stopcode"]:
        failures.append(f"stop code {ours_summary['stopcode']} != tclean's {tclean_summary['stopcode']}")
    ours_thresholds = [cycle["controls"]["cyclethreshold"] for cycle in ours_summary["history"]["cycles"]]
    tclean_thresholds = _tclean_cycle_thresholds(summary)
    if not np.allclose(ours_thresholds, tclean_thresholds, rtol=1e-5, atol=0):
        failures.append(f"cycle thresholds {ours_thresholds} != tclean's {tclean_thresholds}")
    elif ours_thresholds and ours_summary["cyclethreshold"] != ours_thresholds[-1]:
        failures.append(f"summary cyclethreshold {ours_summary['cyclethreshold']} is not the last cycle's")
    if ours_summary["nmajordone"] != tclean_summary["nmajordone"]:
        failures.append(f"nmajordone {ours_summary['nmajordone']} != tclean's {tclean_summary['nmajordone']}")
    if not abs(ours_summary["iterdone"] - tclean_summary["iterdone"]) <= 0.01 * tclean_summary["iterdone"]:
        failures.append(
            f"iterdone {ours_summary['iterdone']} is not within 1% of tclean's {tclean_summary['iterdone']}"
        )
    ours_beam, tclean_beam = (
        ours["image"].restoring_beam,
        read_casa_image(f"{prefix}.image{tt0}").restoring_beam,
    )
    if ours_beam is None or tclean_beam is None:
        failures.append(f"restoring beam missing: ours {ours_beam}, tclean {tclean_beam}")
    elif not np.allclose(
        [ours_beam.major_arcsec, ours_beam.minor_arcsec, ours_beam.pa_deg],
        [tclean_beam.major_arcsec, tclean_beam.minor_arcsec, tclean_beam.pa_deg],
        rtol=1e-4,
        atol=1e-4,
    ):
        failures.append(f"restoring beam {ours_beam} != tclean's {tclean_beam}")

    if not automask:
        if not np.array_equal(mine["mask"], theirs["mask"]):
            failures.append(
                f"masks differ in {int((mine['mask'] != theirs['mask']).sum())} pixels "
                f"(ours {int(mine['mask'].sum())}, tclean {int(theirs['mask'].sum())})"
            )
        failures += _check_mask_meaning(parameters, mine, theirs)
    else:
        failures += _check_automask_cycles(case, ours, prefix)
        iou = _iou(mine["mask"], theirs["mask"])
        if not iou >= 0.5:
            failures.append(f"final auto-multithresh masks overlap with IoU {iou:.3f} < 0.5")
        if case.automask == "numpy" and not np.array_equal(mine["mask"], theirs["mask"]):
            # radio_clean.automask carries CASA's state, and the exported mask is the last minor
            # cycle's, as tclean leaves img.mask: the same mask.
            failures.append(
                f"final auto-multithresh masks differ in {int((mine['mask'] != theirs['mask']).sum())} "
                f"pixels (ours {int(mine['mask'].sum())}, tclean {int(theirs['mask'].sum())})"
            )
    assert not failures, f"{name} differs from tclean:\n" + "\n".join(failures)

    if automask and case.automask == "casatools":
        # Everything else agreed; now the strict comparison of the final mask.
        request.applymarker(
            pytest.mark.xfail(
                strict=False,
                raises=AssertionError,
                reason="Known limitation of AutoMaskTask implementation='casatools': each cycle's mask "
                "comes from a fresh CASA tool without the auto-multithresh state CASA keeps in memory "
                "between cycles, so masks can differ from tclean's from the second cycle on.",
            )
        )
        assert np.array_equal(mine["mask"], theirs["mask"]), (
            f"final masks differ in {int((mine['mask'] != theirs['mask']).sum())} pixels "
            f"(ours {int(mine['mask'].sum())}, tclean {int(theirs['mask'].sum())})"
        )


def _tclean_cycle_thresholds(summary):
    """The cycle threshold of each of tclean's minor cycles, from its summaryminor (first plane)."""
    plane = summary["summaryminor"][0][0][0]
    return [float(value) for value in plane["cycleThresh"]]


def _check_mask_meaning(parameters, mine, theirs):
    """Check that the (non-auto) mask is what the parameters ask for, in ours and in tclean's."""
    failures = []
    total = mine["mask"].size
    if parameters.get("usemask", "user") == "pb":
        # The PB mask is where the PB exceeds pbmask (pixels within 1e-6 of the level may go either way).
        pb = mine["pb"]
        certain = np.abs(pb - parameters["pbmask"]) > 1e-6
        if not np.array_equal(mine["mask"][certain], (pb > parameters["pbmask"])[certain]):
            failures.append(f"the pb mask is not where pb > {parameters['pbmask']}")
        if not 0 < mine["mask"].sum() < total:
            failures.append(f"the pb mask has {int(mine['mask'].sum())} of {total} pixels: it masks nothing")
    elif parameters.get("mask"):
        # circle[[64pix,64pix],12pix]: about pi 12**2 = 452 pixels centred on (64, 64).
        for who, images in (("ours", mine), ("tclean", theirs)):
            mask = images["mask"][0, 0]
            y, x = np.nonzero(mask)
            if not (
                0.9 * np.pi * 144 <= mask.sum() <= 1.1 * np.pi * 144
                and abs(x.mean() - 64) < 0.5
                and abs(y.mean() - 64) < 0.5
            ):
                failures.append(
                    f"{who}: the user mask has {mask.sum()} pixels centred on ({x.mean()}, {y.mean()})"
                )
            outside = np.abs(images["model"][:, :, ~mask]).max()
            if outside != 0:
                failures.append(f"{who}: the model has |flux| up to {outside:.3g} outside the user mask")
    else:
        for who, images in (("ours", mine), ("tclean", theirs)):
            if not images["mask"].all():
                failures.append(f"{who}: without a mask the clean mask should be the whole image")
    return failures


def _check_automask_cycles(case, ours, prefix):
    """Compare the mask of every minor cycle that ran with the one tclean saved for that cycle."""
    failures = []
    cycles_run = len(ours["summary"]["history"]["cycles"])
    saved = len(glob.glob(f"{prefix}.autothresh*"))
    if saved != cycles_run:
        failures.append(f"tclean saved {saved} auto-multithresh masks, ours ran {cycles_run} minor cycles")
    for cycle in range(1, min(saved, cycles_run) + 1):
        mask = ours[f"mask_c{cycle}"].pixels > 0.5
        casa = _pixels(f"{prefix}.autothresh{cycle}") > 0.5
        if case.automask == "numpy":
            # radio_clean.automask carries CASA's state between cycles: the same masks.
            if not np.array_equal(mask, casa):
                failures.append(
                    f"cycle {cycle}: numpy auto-multithresh mask differs from tclean's in "
                    f"{int((mask != casa).sum())} pixels (ours {int(mask.sum())}, tclean {int(casa.sum())})"
                )
        elif not _iou(mask, casa) >= 0.8:
            failures.append(
                f"cycle {cycle}: casatools auto-multithresh mask IoU {_iou(mask, casa):.3f} < 0.8"
            )
    if cycles_run >= 1 and not np.array_equal(
        ours["mask_c1"].pixels > 0.5, _pixels(f"{prefix}.autothresh1") > 0.5
    ):
        # The first mask depends on no earlier state: it must be tclean's in both implementations.
        failures.append("the first-cycle auto-multithresh mask differs from tclean's")
    return failures


def test_niter_zero_is_tcleans_dirty_image(demo_ms_dir, tmp_path, monkeypatch):
    """``niter=0``: tclean's dirty image and residual, and its summary (stop code 3, one major cycle)."""
    monkeypatch.chdir(tmp_path)
    case = Case("3c273", {**_3C273, "niter": 0, "weighting": "briggs"})
    vis, field, _ = _measurement_set(case, demo_ms_dir, tmp_path)
    ours = run_clean([vis], parameters=case.parameters, directory=tmp_path / "ours")
    summary = _run_tclean(vis, field, case.parameters, tmp_path / "tclean", {})
    peak = float(np.nanmax(np.abs(_pixels(tmp_path / "tclean" / "img.image"))))
    for kind in ("image", "residual"):
        theirs = _pixels(tmp_path / "tclean" / f"img.{kind}")
        assert _difference(ours[kind].pixels, theirs, peak) <= IMAGE_TOLERANCE, kind
    assert (summary["iterdone"], summary["nmajordone"], summary["stopcode"]) == (0, 1, 3)
    mine = ours["summary"]
    assert (mine["iterdone"], mine["nmajordone"], mine["stopcode"]) == (0, 1, 3)
    assert mine["stop_reason"] == "zero iterations performed"


def test_mtmfs_with_one_taylor_term_is_tcleans(demo_ms_dir, tmp_path, monkeypatch):
    """``deconvolver=mtmfs nterms=1``: tclean's ``.tt0`` images, and no spectral index (it failed before)."""
    monkeypatch.chdir(tmp_path)
    case = Case("3c273", {**_3C273, "niter": 100, "deconvolver": "mtmfs", "nterms": 1})
    vis, field, _ = _measurement_set(case, demo_ms_dir, tmp_path)
    ours = run_clean([vis], parameters=case.parameters, directory=tmp_path / "ours")
    summary = _run_tclean(vis, field, case.parameters, tmp_path / "tclean", {})
    peak = float(np.nanmax(np.abs(_pixels(tmp_path / "tclean" / "img.image.tt0"))))
    for kind in ("image", "residual", "model"):
        theirs = _pixels(tmp_path / "tclean" / f"img.{kind}.tt0")
        assert _difference(ours[kind].pixels, theirs, peak) <= IMAGE_TOLERANCE, kind
    assert not os.path.exists(tmp_path / "tclean" / "img.alpha") and "alpha" not in ours
    mine = ours["summary"]
    assert (mine["iterdone"], mine["nmajordone"], mine["stopcode"]) == (
        summary["iterdone"],
        summary["nmajordone"],
        summary["stopcode"],
    )
