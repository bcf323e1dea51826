"""Wall time and peak memory of radio_clean (pipetask) next to tclean, same MS, same parameters.

Not a test: prints figures and ratios. Usage::

    .venv/bin/python bench/continuum_bench.py [--imsize 256] [--niter 1000] [--jobs 1] [--workdir DIR]

Each job runs in a fresh Python process; peak memory is the largest resident
set of that process and its children (pipetask and its workers).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

_MEASURE = """
import json, resource, sys, time
start = time.perf_counter()
{job}
elapsed = time.perf_counter() - start
usage = [resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
peak_kib = max(usage)
print("BENCH " + json.dumps({{"seconds": elapsed, "peak_mib": peak_kib / 1024}}))
"""


def _measure(job: str, cwd: str) -> dict:
    code = _MEASURE.format(job=textwrap.dedent(job))
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True)
    lines = [line for line in result.stdout.splitlines() if line.startswith("BENCH ")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark job failed:\n{result.stderr[-3000:]}")
    return json.loads(lines[-1][6:])


def main() -> None:
    """Run both jobs and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imsize", type=int, default=256)
    parser.add_argument("--cell", default="0.5arcsec")
    parser.add_argument("--niter", type=int, default=1000)
    parser.add_argument("--deconvolver", default="hogbom")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--workdir", default=None, help="Scratch directory (default: a temporary one).")
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="radio_clean-bench-")
    os.makedirs(workdir, exist_ok=True)
    import radio_clean.demo

    (ms,) = radio_clean.demo.write_demo_data(os.path.join(workdir, "data"))
    parameters = dict(
        imsize=[args.imsize],
        cell=[args.cell],
        niter=args.niter,
        weighting="briggs",
        robust=0.5,
        deconvolver=args.deconvolver,
        scales=[0, 5, 15] if args.deconvolver == "multiscale" else [],
    )
    tclean_job = f"""
        import radio_clean
        from casatasks import tclean
        tclean(vis={ms!r}, imagename={os.path.join(workdir, "tclean", "img")!r}, **{parameters!r})
    """
    settings = [
        f"imsize={args.imsize}",
        f"cell={args.cell}",
        f"niter={args.niter}",
        "weighting=briggs",
        "robust=0.5",
        f"deconvolver={args.deconvolver}",
    ]
    if args.deconvolver == "multiscale":
        settings.append("scales=0,5,15")
    shutil.rmtree(os.path.join(workdir, "repo"), ignore_errors=True)
    ours_job = f"""
        from radio_clean.cli import main
        args = ["image", {ms!r}, "--repo", {os.path.join(workdir, "repo")!r}, "--export",
                {os.path.join(workdir, "out")!r}, "--jobs", "{args.jobs}"]
        for setting in {settings!r}:
            args += ["--set", setting]
        assert main(args) == 0
    """
    tclean_figures = _measure(tclean_job, workdir)
    ours_figures = _measure(ours_job, workdir)
    print(f"3C273XC1, imsize {args.imsize}, {args.deconvolver}, niter {args.niter}, pipetask -j {args.jobs}")
    print(f"{'':14s}{'wall [s]':>10s}{'peak RSS [MiB]':>16s}")
    for name, figures in (("tclean", tclean_figures), ("radio_clean", ours_figures)):
        print(f"{name:14s}{figures['seconds']:10.1f}{figures['peak_mib']:16.0f}")
    print(
        f"{'ratio':14s}{ours_figures['seconds'] / tclean_figures['seconds']:10.2f}"
        f"{ours_figures['peak_mib'] / tclean_figures['peak_mib']:16.2f}"
    )


if __name__ == "__main__":
    main()
