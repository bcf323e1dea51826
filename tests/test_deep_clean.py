"""A deep clean: as many major cycles as tclean makes, one step of the CLEAN loop each, matching tclean.

The pipeline once unrolled its cycles into labels, which capped a run at a
dozen major cycles; the loop (`radio_clean.loop.CleanLoop`) now grows a
``cycleNNN`` step for as long as tclean's iteration control says go on.
3C273 at 0.5 arcsec cells, cleaned to 1 mJy with cyclefactor 4 (cycle
thresholds near the peak residual, so few iterations per minor cycle), needs
about 25 major cycles. Both runs go through ``radio-clean image``'s own code
path (`clean_utils.run_clean`) and tclean on the same MS with the same
parameters, in the test's own ``tmp_path``.
"""

import importlib.metadata
import os
import shutil
import time

import numpy as np
import pytest
from clean_utils import run_clean
from lsst.daf.butler import Butler

from radio_clean.casa import read_casa_image, reattach_casa_log

IMAGE_TOLERANCE = 1e-3
"""Largest |ours - tclean| of restored image, residual and model, as a fraction of tclean's image peak
(as in test_parity.py)."""
BEAM_TOLERANCE = 1e-5
"""Largest |ours - tclean| of the PSF and the primary beam (both peak at 1)."""

DEEP = {
    "imsize": [128],
    "cell": ["0.5arcsec"],
    "niter": 100000,
    "threshold": "1mJy",
    "cyclefactor": 4.0,
    "weighting": "briggs",
    "robust": 0.5,
    "datacolumn": "data",
}


def _difference(ours, theirs, scale):
    """Max |ours - theirs| / scale over finite pixels; inf if the NaNs are not in the same places."""
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    assert ours.shape == theirs.shape, f"shapes differ: {ours.shape} and {theirs.shape}"
    if not np.array_equal(np.isnan(ours), np.isnan(theirs)):
        return float("inf")
    finite = np.isfinite(theirs)
    return float(np.max(np.abs(ours[finite] - theirs[finite]), initial=0.0) / scale)


def _tclean(vis, parameters, directory):
    from casatasks import casalog, tclean

    os.makedirs(directory)
    casalog.setlogfile(str(directory / "tclean.log"))
    try:
        return tclean(vis=vis, imagename=str(directory / "img"), **parameters)
    finally:
        reattach_casa_log(casalog)


def _clean_both(parameters, demo_ms_dir, directory):
    """Run radio-clean image and tclean on a copy of the demo MS; check images; return both results."""
    vis = str(directory / "3C273XC1.ms")
    shutil.copytree(demo_ms_dir / "3C273XC1.ms", vis)
    started = time.perf_counter()
    ours = run_clean([vis], parameters=parameters, directory=directory / "ours")
    ours_seconds = time.perf_counter() - started
    started = time.perf_counter()
    summary = _tclean(vis, parameters, directory / "tclean")
    tclean_seconds = time.perf_counter() - started
    theirs = {
        kind: read_casa_image(str(directory / "tclean" / f"img.{kind}")).pixels
        for kind in ("image", "residual", "model", "psf", "pb", "mask")
    }
    peak = float(np.nanmax(np.abs(theirs["image"])))
    scales = {"image": peak, "residual": peak, "model": peak, "psf": 1.0, "pb": 1.0}
    measured = {kind: _difference(ours[kind].pixels, theirs[kind], scale) for kind, scale in scales.items()}
    mine = ours["summary"]
    print(
        f"ours iterdone/nmajordone/stopcode {mine['iterdone']}/{mine['nmajordone']}/{mine['stopcode']} "
        f"in {ours_seconds:.1f} s; tclean {summary['iterdone']}/{summary['nmajordone']}/"
        f"{summary['stopcode']} in {tclean_seconds:.1f} s; peak {peak:.6g}; "
        + ", ".join(f"{kind} {value:.3g}" for kind, value in measured.items())
    )
    for kind, value in measured.items():
        limit = BEAM_TOLERANCE if kind in ("psf", "pb") else IMAGE_TOLERANCE
        assert value <= limit, f"{kind}: max |ours - tclean| = {value:.3g} (limit {limit:g})"
    assert np.array_equal(ours["mask"].pixels > 0.5, theirs["mask"] > 0.5)
    return ours, summary


def _minor_cycle_iterations(summary):
    """Iterations of each minor cycle, as tclean's summaryminor records them (one field, channel, pol)."""
    (fields,) = summary["summaryminor"].values()
    (channels,) = fields.values()
    (record,) = channels.values()
    return [int(n) for n in record["iterDone"]]


def _step_runs(ours):
    """RUN collections of the loop's steps in the CHAINED output collection, and the summaries' cycles."""
    output = ours["run"].collection
    with Butler.from_config(ours["repo"]) as butler:
        runs = set(butler.collections.query(output + "/*"))
        summary_types = butler.registry.queryDatasetTypes("summary_c*")
        cycles = sorted(int(dataset_type.name.removeprefix("summary_c")) for dataset_type in summary_types)
    return output, runs, cycles


def test_deep_clean_matches_tclean_cycle_for_cycle(demo_ms_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # CASA drops TempLattice files in the working directory
    ours, theirs = _clean_both(DEEP, demo_ms_dir, tmp_path)
    summary = ours["summary"]
    assert summary["stopcode"] == theirs["stopcode"] == 2, summary["stop_reason"]
    assert summary["nmajordone"] == theirs["nmajordone"]
    assert summary["nmajordone"] > 12, "not a deep clean: the unrolled pipeline could do this"
    assert abs(summary["iterdone"] - theirs["iterdone"]) <= 0.01 * theirs["iterdone"]
    # Minor cycle by minor cycle: as many as tclean ran, each ending where tclean's ended (within 1%).
    expected = np.cumsum(_minor_cycle_iterations(theirs))
    done = np.cumsum([cycle["exec"]["iterdone"] for cycle in summary["history"]["cycles"]])
    assert len(done) == len(expected) == theirs["nmajordone"] - 1
    assert np.all(np.abs(done - expected) <= 0.01 * theirs["iterdone"]), (done, expected)
    # One RUN per step, as many cycle steps as cycles, and nothing run after CLEAN stopped.
    final = ours["cycles"]
    output, runs, cycles = _step_runs(ours)
    assert runs == {f"{output}/start", f"{output}/finish{final:03d}"} | {
        f"{output}/cycle{cycle:03d}" for cycle in range(1, final)
    }
    assert cycles == list(range(1, final + 1))


@pytest.mark.parametrize("nmajor", [5])
def test_nmajor_stops_where_tclean_does(nmajor, demo_ms_dir, tmp_path, monkeypatch):
    """With nmajor, CLEAN stops with stop code 9 after exactly the major cycles tclean makes."""
    monkeypatch.chdir(tmp_path)
    ours, theirs = _clean_both({**DEEP, "nmajor": nmajor}, demo_ms_dir, tmp_path)
    summary = ours["summary"]
    assert summary["stopcode"] == theirs["stopcode"] == 9, summary["stop_reason"]
    assert summary["nmajordone"] == theirs["nmajordone"]
    assert summary["iterdone"] == theirs["iterdone"]
    output, runs, cycles = _step_runs(ours)
    assert len([run for run in runs if run.startswith(f"{output}/cycle")]) == ours["cycles"] - 1
    assert cycles == list(range(1, ours["cycles"] + 1))
    # Each quantum's QA figures are in its task metadata, as the summaries have them.
    with Butler.from_config(ours["repo"]) as butler:
        deconvolve = [
            butler.get(ref)["deconvolve"]
            for ref in butler.query_datasets("deconvolve_metadata", collections=output, find_first=False)
        ]
        major = [
            butler.get(ref)["majorCycle"]
            for ref in butler.query_datasets("majorCycle_metadata", collections=output, find_first=False)
        ]
        # The software versions of the run (computed on the loop's second thread), in its start step.
        (packages_ref,) = butler.query_datasets("packages", collections=output)
        packages = butler.get(packages_ref)
    assert packages_ref.run == f"{output}/start"
    assert packages["casatools"] == importlib.metadata.version("casatools")
    assert packages["radio_clean"] == importlib.metadata.version("radio_clean")
    peaks = sorted(float(metadata["peak_residual"]) for metadata in deconvolve if "peak_residual" in metadata)
    assert peaks == sorted(summary["peak_residual_before_cycle"])
    assert len(major) == summary["nmajordone"]
    assert all(metadata["peak_abs_residual"] > 0 for metadata in major)
