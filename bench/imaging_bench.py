"""Whole-process wall time, CPU time and peak memory of ``radio-clean image`` next to tclean.

Not a test: prints figures, ratios and whether the speed and memory targets
are met. Usage::

    .venv/bin/python bench/imaging_bench.py [--jobs-list 3c273-automask,ngc5921-cube ...]
        [--repeat 3] [--workdir /tmp/radio_clean-bench] [--sides tclean,ours,wsclean]
        [--chunk-channels K] [--ours-args "--log-level INFO"] [--timeout 3600] [--json FILE]
        [--tclean-env NAME=VALUE] [--keep] [--list]

For every job the same MeasurementSet is imaged with the same tclean
parameters by

- ``tclean``: a fresh ``python -c`` process that imports casatasks and runs
  ``tclean(..., fullsummary=False)``, in this process's environment with
  CASA's offline site configuration (``--tclean-env`` adds settings such as
  ``OMP_WAIT_POLICY``);
- ``radio-clean image MS --repo R --export D --set name=value ... --jobs N``:
  the command line, a fresh process with a new repository every run;
- ``wsclean`` with comparable (not identical) parameters, for continuum jobs,
  when Debian's ``wsclean`` is on the PATH (skipped silently otherwise).

The runs are paired and interleaved (tclean, ours, wsclean, tclean, ours, ...
``--repeat`` times) so that a change in the machine's load touches both
sides alike, and the medians are compared. Wall time is that of the process
from start to exit. CPU time is user + system time of the process and all its
descendants (``os.wait4`` of the process, plus any orphaned descendant, which
this script reaps as a child subreaper). Peak RSS is ``ru_maxrss`` of that
process tree: the largest resident set of any one process in it, not the sum
of processes running at the same time. For radio-clean the script also reads
the run's task metadata from its repository and prints where the wall time
went: in the tasks' ``run`` methods (the imaging work), in the rest of the
quanta (Butler gets and puts, logs, metadata) and outside the quanta, and the
tasks' time against tclean's whole process.

The MeasurementSets are made once, outside the timed region, and cached in
``--workdir`` (the simulated ones under a name that includes a hash of their
parameters); they are never modified (tclean runs with ``savemodel='none'``,
radio-clean ingests them read-only, WSClean with ``-no-update-model-required``).
Each timed run gets a fresh directory ``WORKDIR/runs/JOB/SIDE-N`` with its
stdout and stderr; the images in it are deleted after the run unless
``--keep``.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import datetime
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

DEFAULT_WORKDIR = "/tmp/radio_clean-bench"
SIDES = ("tclean", "ours", "wsclean")
_PR_SET_CHILD_SUBREAPER = 36

# ---------------------------------------------------------------------------------------------------------
# The jobs


@dataclasses.dataclass(frozen=True)
class Job:
    """One imaging job: an MS, tclean's parameters and the targets for ours against tclean."""

    name: str
    description: str
    data: str
    """Key of `_DATA`: which MS to image."""
    parameters: dict[str, Any]
    """tclean's keyword arguments (also given to ``radio-clean image`` as ``--set``)."""
    ours_jobs: int = 1
    """``radio-clean image --jobs``."""
    cube: bool = False
    wall_target: float = 0.8
    """Most wall time of ours over that of (serial) tclean."""
    rss_target: float = 1.0


_CONTINUUM_3C273 = dict(
    imsize=[512],
    cell=["0.5arcsec"],
    weighting="briggs",
    robust=0.5,
    usemask="auto-multithresh",
    niter=1000,
)
_CUBE_NGC5921 = dict(
    imsize=[256],
    cell=["8arcsec"],
    specmode="cube",
    niter=100000,
    threshold="5mJy",
    weighting="briggs",
    robust=0.5,
    usemask="auto-multithresh",
    datacolumn="data",
)

JOBS: dict[str, Job] = {
    job.name: job
    for job in (
        Job(
            "3c273-automask",
            "VLA 3C273 X band, auto-multithresh, niter 1000",
            "3c273",
            _CONTINUUM_3C273,
        ),
        Job(
            "3c273-deep",
            "VLA 3C273, 0.1 arcsec cells, niter 20000 to 0.05 mJy, cyclefactor 4 "
            "(tclean: 27 major cycles, 21297 iterations, stop code 1)",
            "3c273",
            {
                **_CONTINUUM_3C273,
                "cell": ["0.1arcsec"],
                "niter": 20000,
                "threshold": "0.05mJy",
                "cyclefactor": 4.0,
            },
        ),
        Job(
            "sim-mtmfs",
            "simulated VLA C, 8 channels over 200 MHz at 1.4 GHz, sources with spectral indices, "
            "mtmfs nterms 2",
            "sim-mtmfs",
            dict(
                imsize=[512],
                cell=["2arcsec"],
                weighting="briggs",
                robust=0.5,
                deconvolver="mtmfs",
                nterms=2,
                niter=1000,
            ),
        ),
        Job(
            "multiscale",
            "simulated VLA D, extended Gaussian and a point source, multiscale 0,5,15",
            "sim-extended",
            dict(
                imsize=[256],
                cell=["8arcsec"],
                weighting="briggs",
                robust=0.5,
                deconvolver="multiscale",
                scales=[0, 5, 15],
                niter=1000,
            ),
        ),
        Job(
            "ngc5921-cube",
            "VLA NGC5921 HI cube (continuum subtracted), auto-multithresh, radio-clean --jobs 1",
            "ngc5921",
            _CUBE_NGC5921,
            cube=True,
            wall_target=1.0,
        ),
        Job(
            "ngc5921-cube-jobs2",
            "the same cube with radio-clean --jobs 2, against serial tclean",
            "ngc5921",
            _CUBE_NGC5921,
            ours_jobs=2,
            cube=True,
            wall_target=0.6,
        ),
        Job(
            "sim-large",
            "simulated VLA C, 4 h of 30 s integrations, 8 channels: many times 3C273's visibilities",
            "sim-large",
            dict(imsize=[512], cell=["2arcsec"], weighting="briggs", robust=0.5, niter=1000),
        ),
    )
}

# ---------------------------------------------------------------------------------------------------------
# The data, made once and cached


def _sim_sky() -> list:
    from radio_clean.simulate import SkyComponent

    return [
        SkyComponent(1.0, (0.0, 0.0), spectral_index=-0.7),
        SkyComponent(0.3, (120.0, -60.0), spectral_index=-1.0),
        SkyComponent(0.2, (-200.0, 150.0), spectral_index=0.5),
        SkyComponent(0.1, (300.0, 250.0), spectral_index=-0.3),
        SkyComponent(
            0.15,
            (-150.0, -200.0),
            shape="gaussian",
            major_arcsec=20.0,
            minor_arcsec=10.0,
            pa_deg=30.0,
            spectral_index=-0.8,
        ),
    ]


def _extended_sky() -> list:
    from radio_clean.simulate import SkyComponent

    return [
        SkyComponent(
            2.0,
            (0.0, 0.0),
            shape="gaussian",
            major_arcsec=150.0,
            minor_arcsec=100.0,
            pa_deg=45.0,
            spectral_index=-0.7,
        ),
        SkyComponent(0.5, (400.0, 300.0)),
    ]


# Keyword arguments of simulate_ms (besides path and components) for each simulated MS.
_SIMULATIONS: dict[str, tuple[Callable[[], list], dict[str, Any]]] = {
    "sim-mtmfs": (
        _sim_sky,
        dict(
            array="vla.c",
            freq_start_hz=1.3e9,
            chan_width_hz=25e6,
            n_chan=8,
            hours=1.0,
            integration_s=60.0,
            noise_jy=0.01,
            seed=11,
        ),
    ),
    "sim-extended": (
        _extended_sky,
        dict(
            array="vla.d",
            freq_start_hz=1.4e9,
            chan_width_hz=16e6,
            n_chan=4,
            hours=2.0,
            integration_s=60.0,
            noise_jy=0.01,
            seed=12,
        ),
    ),
    "sim-large": (
        _sim_sky,
        dict(
            array="vla.c",
            freq_start_hz=1.3e9,
            chan_width_hz=25e6,
            n_chan=8,
            hours=4.0,
            integration_s=30.0,
            noise_jy=0.01,
            seed=13,
        ),
    ),
}


def _simulated_ms(name: str, directory: str) -> str:
    from radio_clean.casa import is_measurement_set
    from radio_clean.simulate import simulate_ms

    make_sky, kwargs = _SIMULATIONS[name]
    components = make_sky()
    key = json.dumps([repr(components), kwargs], sort_keys=True)
    path = os.path.join(directory, f"{name}-{hashlib.sha1(key.encode()).hexdigest()[:8]}.ms")
    if not is_measurement_set(path):
        print(f"simulating {path} ...", flush=True)
        start = time.perf_counter()
        simulate_ms(path, components, **kwargs)
        print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)
    return path


def _ms_path(data: str, workdir: str) -> str:
    """Return the path of the MS ``data``, making it first if it is not in the cache."""
    directory = os.path.join(workdir, "data")
    os.makedirs(directory, exist_ok=True)
    if data == "3c273":
        from radio_clean.demo import write_demo_data

        (path,) = write_demo_data(directory)
        return path
    if data == "ngc5921":
        # Test support, not part of radio_clean: the checkout's tests/ngc5921_utils.py.
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests"))
        from ngc5921_utils import prepare_ngc5921

        print("NGC5921: calibrating it, or reusing the calibrated MSs from an earlier run ...", flush=True)
        return prepare_ngc5921(os.path.join(directory, "ngc5921")).line_ms
    return _simulated_ms(data, directory)


def _visibilities(ms: str) -> dict[str, int]:
    """Rows, channels per row (summed over spectral windows) and rows x channels of ``ms``."""
    import casatools
    import numpy as np

    table = casatools.table()
    try:
        table.open(os.path.join(ms, "SPECTRAL_WINDOW"))
        num_chan = table.getcol("NUM_CHAN")
        table.close()
        table.open(os.path.join(ms, "DATA_DESCRIPTION"))
        spw_of_ddid = table.getcol("SPECTRAL_WINDOW_ID")
        table.close()
        table.open(ms)
        rows = table.nrows()
        ddid = table.getcol("DATA_DESC_ID")
        table.close()
    finally:
        table.done()
    channels = num_chan[spw_of_ddid[ddid]]
    return {"rows": int(rows), "channels": int(num_chan.max()), "visibilities": int(np.sum(channels))}


# ---------------------------------------------------------------------------------------------------------
# Running one process and measuring it


def _become_subreaper() -> bool:
    """Make orphaned descendants of our children ours, so that their CPU time is counted."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _reap_orphans(grace: float) -> tuple[float, int, int]:
    """Wait for descendants left behind by the last run; return their CPU seconds, max RSS (KiB), count."""
    cpu, maxrss, count = 0.0, 0, 0
    deadline = time.monotonic() + grace
    while True:
        try:
            pid, _, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            if time.monotonic() > deadline:
                print(
                    f"  warning: descendants still running {grace:.0f} s after the run; not counted",
                    flush=True,
                )
                break
            time.sleep(0.05)
            continue
        cpu += usage.ru_utime + usage.ru_stime
        maxrss = max(maxrss, usage.ru_maxrss)
        count += 1
    return cpu, maxrss, count


def _run_measured(
    argv: list[str], run_dir: str, timeout: float, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run ``argv`` in ``run_dir``; return wall, CPU and peak RSS of its process tree and its exit code."""
    waited: list = []
    with (
        open(os.path.join(run_dir, "stdout.log"), "w") as stdout,
        open(os.path.join(run_dir, "stderr.log"), "w") as stderr,
    ):
        start = time.perf_counter()
        process = subprocess.Popen(
            argv,
            cwd=run_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        waiter = threading.Thread(target=lambda: waited.append(os.wait4(process.pid, 0)))
        waiter.start()
        try:
            waiter.join(timeout)
        except BaseException:  # Ctrl-C: leave no run behind in its own session.
            os.killpg(process.pid, signal.SIGKILL)
            raise
        timed_out = waiter.is_alive()
        if timed_out:
            os.killpg(process.pid, signal.SIGKILL)
            waiter.join()
        wall = time.perf_counter() - start
    _, status, usage = waited[0]
    process.returncode = os.waitstatus_to_exitcode(status)
    orphan_cpu, orphan_rss, n_orphans = _reap_orphans(grace=10.0 if timed_out else 60.0)
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime + orphan_cpu,
        "rss_mib": max(usage.ru_maxrss, orphan_rss) / 1024,
        "returncode": process.returncode,
        "timed_out": timed_out,
        "orphans": n_orphans,
    }


def _tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, errors="replace") as stream:
            return "".join(stream.readlines()[-lines:])
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------------------------
# The three sides

_TCLEAN = """
import json, sys
from casatasks import tclean
vis, imagename, parameters, result = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
summary = tclean(vis=vis, imagename=imagename, fullsummary=False, **parameters)
if not isinstance(summary, dict) or "iterdone" not in summary:
    sys.exit(f"tclean returned {summary!r}")
def plain(value):
    return value.item() if hasattr(value, "item") else str(value)
keys = ("iterdone", "nmajordone", "stopcode", "stopDescription")
with open(result, "w") as stream:
    json.dump({key: summary[key] for key in keys if key in summary}, stream, default=plain)
"""


def _tclean_environment(settings: list[str]) -> dict[str, str]:
    """The bench's environment (with CASA's site configuration) plus ``--tclean-env NAME=VALUE``."""
    env = dict(os.environ)
    for setting in settings:
        name, _, value = setting.partition("=")
        env[name] = value
    return env


def _setting(value: Any) -> str:
    """A tclean parameter value as ``radio-clean image --set`` takes it."""
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value)
    return str(value)


def _radio_clean_command() -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "radio-clean")
    if os.access(script, os.X_OK):
        return [script]
    found = shutil.which("radio-clean")
    return [found] if found else [sys.executable, "-m", "radio_clean.cli"]


def _quantity(text: str, units: dict[str, float]) -> float:
    match = re.fullmatch(r"\s*([-+0-9.eE]+)\s*([A-Za-z]*)\s*", str(text))
    if not match or match.group(2) not in units:
        raise ValueError(f"cannot convert {text!r}")
    return float(match.group(1)) * units[match.group(2)]


def _wsclean_arguments(job: Job, ms: str, out: str) -> list[str] | None:
    """WSClean's arguments comparable with the job's tclean parameters; `None` where it does not fit."""
    p = job.parameters
    if job.cube:
        return None
    size = p["imsize"][0]
    arcsec = _quantity(p["cell"][0], {"arcsec": 1.0, "arcmin": 60.0, "deg": 3600.0})
    argv = [
        "wsclean",
        "-name",
        os.path.join(out, "wsclean"),
        "-temp-dir",
        out,
        "-data-column",
        "DATA",
        "-no-update-model-required",
        "-pol",
        "I",
        "-size",
        str(size),
        str(size),
        "-scale",
        f"{arcsec!r}asec",
        "-niter",
        str(p.get("niter", 0)),
        "-gain",
        str(p.get("gain", 0.1)),
        "-mgain",
        "0.8",
    ]
    if p.get("weighting", "natural") in ("briggs", "briggsabs"):
        argv += ["-weight", "briggs", str(p.get("robust", 0.5))]
    else:
        argv += ["-weight", p.get("weighting", "natural")]
    if "threshold" in p:
        argv += ["-threshold", repr(_quantity(p["threshold"], {"Jy": 1.0, "mJy": 1e-3, "uJy": 1e-6}))]
    if p.get("usemask") == "auto-multithresh":
        argv += ["-auto-mask", "3"] + ([] if "threshold" in p else ["-auto-threshold", "1"])
    if p.get("deconvolver") == "multiscale":
        argv += ["-multiscale", "-multiscale-scales", _setting(p["scales"])]
    if p.get("deconvolver") == "mtmfs":
        argv += ["-join-channels", "-channels-out", "4", "-fit-spectral-pol", str(p.get("nterms", 2))]
    return argv + [ms]


def _run_side(side: str, job: Job, ms: str, run_dir: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one side of ``job`` once in the fresh directory ``run_dir``; return its figures."""
    shutil.rmtree(run_dir, ignore_errors=True)
    out = os.path.join(run_dir, "out")
    os.makedirs(out)
    env = None
    if side == "tclean":
        env = _tclean_environment(args.tclean_env)
        result_path = os.path.join(run_dir, "tclean.json")
        argv = [
            sys.executable,
            "-c",
            _TCLEAN,
            ms,
            os.path.join(out, "img"),
            json.dumps(job.parameters),
            result_path,
        ]
    elif side == "ours":
        export = os.path.join(out, "export")
        argv = _radio_clean_command() + [
            "image",
            ms,
            "--repo",
            os.path.join(out, "repo"),
            "--export",
            export,
            "--jobs",
            str(job.ours_jobs),
        ]
        if job.cube and args.chunk_channels:
            argv += ["--chunk-channels", str(args.chunk_channels)]
        for name, value in job.parameters.items():
            argv += ["--set", f"{name}={_setting(value)}"]
        argv += shlex.split(args.ours_args)
    else:
        argv = _wsclean_arguments(job, ms, out)
    with open(os.path.join(run_dir, "command.txt"), "w") as stream:
        stream.write(shlex.join(argv) + "\n")
    figures = _run_measured(argv, run_dir, args.timeout, env)
    figures["ok"] = figures["returncode"] == 0 and not figures["timed_out"]
    summary: dict[str, Any] = {}
    if figures["ok"] and side == "tclean":
        with open(result_path) as stream:
            summary = json.load(stream)
    elif figures["ok"] and side == "ours":
        summary = _ours_summary(export)
        figures.update(_ours_time_in_quanta(os.path.join(out, "repo")))
    figures["summary"] = summary
    if not figures["ok"]:
        why = "timed out" if figures["timed_out"] else f"exit code {figures['returncode']}"
        figures["error"] = f"{why}; see {run_dir}/stderr.log:\n{_tail(os.path.join(run_dir, 'stderr.log'))}"
    elif not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    return figures


def _ours_summary(export: str) -> dict[str, Any]:
    """iterdone, nmajordone and stop code(s) from the ``summary.json`` that ``radio-clean image`` exported."""
    paths = [os.path.join(export, "summary.json")]
    if os.path.isdir(export):
        paths += sorted(os.path.join(export, sub, "summary.json") for sub in os.listdir(export))
    for path in paths:
        if os.path.isfile(path):
            with open(path) as stream:
                full = json.load(stream)
            break
    else:
        return {"missing": f"no summary.json in {export}"}
    summary = {key: full[key] for key in ("iterdone", "nmajordone", "stopcode", "stop_reason") if key in full}
    chunks = full.get("channel_chunks")
    if chunks:
        codes = sorted({chunk.get("stopcode") for chunk in chunks}, key=str)
        summary.setdefault("stopcode", codes[0] if len(codes) == 1 else "/".join(map(str, codes)))
        summary["chunks"] = len(chunks)
    return summary


def _ours_time_in_quanta(repo: str) -> dict[str, float]:
    """Wall time in the tasks' ``run`` methods and in whole quanta, summed over the run's quanta.

    From the task metadata the run stored in its repository (``runStartUtc``
    and ``runEndUtc`` of ``@timeMethod``, the executor's ``prepUtc`` and
    ``endUtc``). ``run`` is the imaging work with its scratch images; a
    quantum adds its Butler gets and puts, logs and metadata. With
    ``--jobs N`` quanta overlap, so the sums can exceed the wall time.
    """
    from lsst.daf.butler import Butler

    def seconds(start: str, end: str) -> float:
        return (datetime.datetime.fromisoformat(end) - datetime.datetime.fromisoformat(start)).total_seconds()

    in_run = in_quanta = 0.0
    with Butler.from_config(repo) as butler:
        refs = butler.query_all_datasets("*", name="*_metadata", find_first=False, limit=None)
        for ref in refs:
            metadata = butler.get(ref)
            task = metadata[ref.datasetType.name.removesuffix("_metadata")]
            in_run += seconds(task["runStartUtc"], task["runEndUtc"])
            in_quanta += seconds(metadata["quantum"]["prepUtc"], metadata["quantum"]["endUtc"])
    return {"in_run_s": in_run, "in_quanta_s": in_quanta}


# ---------------------------------------------------------------------------------------------------------
# Figures


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [run[key] for run in runs if run["ok"]]
    return statistics.median(values) if values else None


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    return ours / theirs if ours is not None and theirs else None


def _fmt(value: float | None, spec: str = ".1f", width: int = 9) -> str:
    return f"{'-' if value is None else format(value, spec):>{width}s}"


def _convergence(summary: dict[str, Any]) -> str:
    if not summary:
        return ""
    text = (
        f"iterdone {summary.get('iterdone', '?')}, nmajordone {summary.get('nmajordone', '?')}, "
        f"stopcode {summary.get('stopcode', '?')}"
    )
    if "chunks" in summary:
        text += f" ({summary['chunks']} chunks)"
    reason = summary.get("stopDescription") or summary.get("stop_reason")
    return text + (f": {reason}" if reason else "")


def _run_job(job: Job, ms: str, sides: list[str], args: argparse.Namespace) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    skipped: set[str] = set()
    for repeat in range(args.repeat):
        for side in sides:
            if side in skipped:
                continue
            run_dir = os.path.join(args.workdir, "runs", job.name, f"{side}-{repeat + 1}")
            figures = _run_side(side, job, ms, run_dir, args)
            runs[side].append(figures)
            label = {"ours": "radio-clean"}.get(side, side)
            if figures["ok"]:
                print(
                    f"  round {repeat + 1} {label:12s} wall {figures['wall_s']:7.1f} s"
                    f"  cpu {figures['cpu_s']:7.1f} s"
                    f"  rss {figures['rss_mib']:6.0f} MiB  {_convergence(figures['summary'])}",
                    flush=True,
                )
                if "in_run_s" in figures:
                    print(
                        f"  {'':20s}in the tasks' run methods {figures['in_run_s']:.1f} s, "
                        f"in quanta {figures['in_quanta_s']:.1f} s (summed over quanta)",
                        flush=True,
                    )
            else:
                print(f"  round {repeat + 1} {label:12s} FAILED ({figures['error']})", flush=True)
                if side != "tclean":
                    print(f"  (no further {label} runs of {job.name})", flush=True)
                    skipped.add(side)
    medians = {
        side: {
            key: _median(side_runs, key)
            for key in ("wall_s", "cpu_s", "rss_mib", "in_run_s", "in_quanta_s")
            if all(key in run for run in side_runs if run["ok"])
        }
        for side, side_runs in runs.items()
    }
    result: dict[str, Any] = {"runs": runs, "medians": medians}
    if "tclean" in medians:
        for side in ("ours", "wsclean"):
            if side in medians:
                result[f"{side}/tclean"] = {
                    key: _ratio(medians[side][key], medians["tclean"][key])
                    for key in ("wall_s", "cpu_s", "rss_mib")
                }
    return result


def _print_job(job: Job, result: dict[str, Any]) -> None:
    print(f"  median over the successful runs{'':9s}wall [s]   cpu [s]  peak RSS [MiB]")
    for side, figures in result["medians"].items():
        label = {"ours": f"radio-clean --jobs {job.ours_jobs}"}.get(side, side)
        print(
            f"  {label:39s}{_fmt(figures['wall_s'])}{_fmt(figures['cpu_s'], width=10)}"
            f"{_fmt(figures['rss_mib'], '.0f', width=16)}"
        )
    for side in ("ours", "wsclean"):
        ratios = result.get(f"{side}/tclean")
        if ratios:
            label = "radio-clean / tclean" if side == "ours" else "wsclean / tclean"
            if job.cube and job.ours_jobs > 1 and side == "ours":
                label = "radio-clean --jobs 2 / serial tclean"
            print(
                f"  {label:39s}{_fmt(ratios['wall_s'], '.2f')}{_fmt(ratios['cpu_s'], '.2f', width=10)}"
                f"{_fmt(ratios['rss_mib'], '.2f', width=16)}"
            )


def _verdict(value: float | None, target: float) -> str:
    if value is None:
        return "n/a"
    return "met" if value <= target else "NOT met"


def _print_table(results: dict[str, dict[str, Any]]) -> None:
    print()
    with_wsclean = any(result["medians"].get("wsclean", {}).get("wall_s") for result in results.values())
    header = (
        f"{'job':20s}{'tclean [s]':>11s}{'ours [s]':>10s}{'wall':>7s}{'CPU':>7s}{'RSS':>7s}"
        f"   {'wall target':20s}{'RSS target':18s}{'wsclean [s]' if with_wsclean else ''}"
    )
    print("ratios are ours / tclean (median wall, CPU, peak RSS); cube --jobs 2 is against serial tclean")
    print(header)
    print("-" * len(header))
    for name, result in results.items():
        job = JOBS[name]
        tclean = result["medians"].get("tclean", {})
        ours = result["medians"].get("ours", {})
        ratios = result.get("ours/tclean") or {"wall_s": None, "cpu_s": None, "rss_mib": None}
        wall_target = f"<= {job.wall_target:g}: {_verdict(ratios['wall_s'], job.wall_target)}"
        rss_target = f"<= {job.rss_target:g}: {_verdict(ratios['rss_mib'], job.rss_target)}"
        print(
            f"{name:20s}{_fmt(tclean.get('wall_s'), width=11)}{_fmt(ours.get('wall_s'), width=10)}"
            f"{_fmt(ratios['wall_s'], '.2f', 7)}{_fmt(ratios['cpu_s'], '.2f', 7)}"
            f"{_fmt(ratios['rss_mib'], '.2f', 7)}"
            f"   {wall_target:20s}{rss_target:18s}"
            + (_fmt(result["medians"].get("wsclean", {}).get("wall_s"), width=11) if with_wsclean else "")
        )


def _print_time_in_quanta(results: dict[str, dict[str, Any]]) -> None:
    rows = {name: result["medians"].get("ours", {}) for name, result in results.items()}
    rows = {name: ours for name, ours in rows.items() if ours.get("in_run_s") is not None}
    if not rows:
        return
    print()
    print("where radio-clean's wall time goes (medians; quanta summed, so they overlap with --jobs 2)")
    header = (
        f"{'job':20s}{'ours [s]':>10s}{'in quanta':>11s}{'in run':>9s}{'outside':>9s}"
        f"{'run / tclean wall':>19s}"
    )
    print(header)
    print("-" * len(header))
    for name, ours in rows.items():
        tclean_wall = results[name]["medians"].get("tclean", {}).get("wall_s")
        serial = JOBS[name].ours_jobs == 1
        print(
            f"{name:20s}{_fmt(ours['wall_s'], width=10)}{_fmt(ours['in_quanta_s'], width=11)}"
            f"{_fmt(ours['in_run_s'], width=9)}"
            f"{_fmt(ours['wall_s'] - ours['in_quanta_s'] if serial else None, width=9)}"
            f"{_fmt(_ratio(ours['in_run_s'], tclean_wall), '.2f', 19)}"
        )


# ---------------------------------------------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--jobs-list",
        default=",".join(JOBS),
        help=f"Comma-separated jobs to run (default all: {', '.join(JOBS)}).",
    )
    parser.add_argument("--repeat", type=int, default=3, help="Paired runs per job (default 3).")
    parser.add_argument(
        "--workdir",
        default=DEFAULT_WORKDIR,
        help=f"Data cache and run directories (default {DEFAULT_WORKDIR}).",
    )
    parser.add_argument(
        "--sides",
        default=",".join(SIDES),
        help="Which of tclean, ours, wsclean to run (default all; wsclean only where installed and fitting).",
    )
    parser.add_argument("--chunk-channels", type=int, help="Cube jobs: radio-clean image --chunk-channels.")
    parser.add_argument(
        "--ours-args", default="", help='Extra arguments for radio-clean image, e.g. "--log-level INFO".'
    )
    parser.add_argument(
        "--tclean-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="An environment variable for the tclean side only, e.g. OMP_WAIT_POLICY=passive (repeatable).",
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="Seconds before a run is killed.")
    parser.add_argument("--json", help="Write all figures to this JSON file.")
    parser.add_argument("--keep", action="store_true", help="Keep the images and repositories of every run.")
    parser.add_argument("--list", action="store_true", help="List the jobs with their data and exit.")
    args = parser.parse_args(argv)
    args.workdir = os.path.abspath(args.workdir)
    args.jobs_list = [name.strip() for name in args.jobs_list.split(",") if name.strip()]
    unknown = [name for name in args.jobs_list if name not in JOBS]
    if unknown:
        parser.error(f"unknown job(s) {', '.join(unknown)}; choose from {', '.join(JOBS)}")
    args.sides = [side.strip() for side in args.sides.split(",") if side.strip()]
    if set(args.sides) - set(SIDES):
        parser.error(f"--sides takes {', '.join(SIDES)}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the selected jobs, print the figures and the table of targets; return 0."""
    args = _parse_args(argv)
    if args.list:
        for job in JOBS.values():
            print(
                f"{job.name:20s}{job.description}\n{'':20s}data {job.data}, "
                f"radio-clean --jobs {job.ours_jobs}, "
                f"wall ratio target {job.wall_target:g}; {job.parameters}"
            )
        return 0
    # Configures CASA for offline use before anything imports casatools.
    from radio_clean.casa import set_up_casa

    set_up_casa()

    os.makedirs(args.workdir, exist_ok=True)
    subreaper = _become_subreaper()
    machine = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_start": os.getloadavg(),
        "wsclean": shutil.which("wsclean"),
        "subreaper": subreaper,
    }
    print(
        f"{machine['cpus']} cores, load average {' '.join(f'{x:.2f}' for x in machine['loadavg_start'])}, "
        f"repeat {args.repeat}, work directory {args.workdir}"
    )
    reference = _visibilities(_ms_path("3c273", args.workdir))["visibilities"]
    results: dict[str, dict[str, Any]] = {}
    report: dict[str, Any] = {"machine": machine, "arguments": vars(args), "jobs": {}}
    for name in args.jobs_list:
        job = JOBS[name]
        ms = _ms_path(job.data, args.workdir)
        counts = _visibilities(ms)
        sides = [side for side in args.sides if side != "wsclean"]
        if "wsclean" in args.sides and machine["wsclean"] and _wsclean_arguments(job, ms, "") is not None:
            sides.append("wsclean")
        print(f"\n== {name}: {job.description}")
        print(
            f"   {os.path.basename(ms)}: {counts['rows']} rows x {counts['channels']} channels = "
            f"{counts['visibilities']:,} visibilities ({counts['visibilities'] / reference:.1f} x 3C273XC1)"
        )
        print(f"   tclean parameters: {job.parameters}; load average {os.getloadavg()[0]:.2f}", flush=True)
        result = _run_job(job, ms, sides, args)
        _print_job(job, result)
        results[name] = result
        report["jobs"][name] = {
            "description": job.description,
            "ms": ms,
            **counts,
            "parameters": job.parameters,
            "ours_jobs": job.ours_jobs,
            "targets": {"wall_ratio": job.wall_target, "rss_ratio": job.rss_target},
            **result,
        }
    _print_table(results)
    _print_time_in_quanta(results)
    report["machine"]["loadavg_end"] = os.getloadavg()
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(report, stream, indent=2, default=str)
        print(f"\nfigures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
