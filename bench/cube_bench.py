"""Wall time of a chunked cube with ``pipetask -j 1`` and ``-j 2``, next to tclean's serial time.

Not a test: prints figures and ratios. Usage::

    .venv/bin/python bench/cube_bench.py [--imsize 256] [--chunk-channels 16] [--cycles 12] [--workdir DIR]

The cube is the VLA NGC5921 HI line (63 channels), calibrated from casadata's
UVFITS by ``radio_clean.prepare``. Both radio_clean runs image the same
channel chunks (the same quantum graph) into fresh repositories; only the
number of worker processes differs. Each job runs in a fresh Python process.
"""

import argparse
import os
import shutil
import tempfile

from continuum_bench import _measure


def main() -> None:
    """Run the three jobs and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imsize", type=int, default=256)
    parser.add_argument("--cell", default="8arcsec")
    parser.add_argument("--threshold", default="5mJy")
    parser.add_argument("--chunk-channels", type=int, default=16)
    parser.add_argument("--cycles", type=int, default=12)
    parser.add_argument("--workdir", default=None, help="Scratch directory (default: a temporary one).")
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="radio_clean-cube-bench-")
    os.makedirs(workdir, exist_ok=True)
    from radio_clean.prepare import prepare_ngc5921

    ms = prepare_ngc5921(os.path.join(workdir, "data")).line_ms
    parameters = dict(
        imsize=[args.imsize],
        cell=[args.cell],
        specmode="cube",
        niter=100000,
        threshold=args.threshold,
        weighting="briggs",
        robust=0.5,
        datacolumn="data",
    )
    tclean_job = f"""
        import radio_clean
        from casatasks import tclean
        tclean(vis={ms!r}, imagename={os.path.join(workdir, "tclean", "img")!r}, **{parameters!r})
    """
    settings = [
        f"imsize={args.imsize}",
        f"cell={args.cell}",
        "specmode=cube",
        "niter=100000",
        f"threshold={args.threshold}",
        "weighting=briggs",
        "robust=0.5",
        "datacolumn=data",
    ]
    figures = {"tclean (serial)": _measure(tclean_job, workdir)}
    for jobs in (1, 2):
        repo = os.path.join(workdir, f"repo_j{jobs}")
        shutil.rmtree(repo, ignore_errors=True)
        export = os.path.join(workdir, f"out_j{jobs}")
        job = f"""
            from radio_clean.cli import main
            args = ["image", {ms!r}, "--repo", {repo!r}, "--export", {export!r}, "--jobs", "{jobs}",
                    "--chunk-channels", "{args.chunk_channels}", "--cycles", "{args.cycles}"]
            for setting in {settings!r}:
                args += ["--set", setting]
            assert main(args) == 0
        """
        figures[f"radio_clean -j {jobs}"] = _measure(job, workdir)
    n_chunks = -(-63 // args.chunk_channels)
    print(
        f"NGC5921 HI cube, 63 channels in {n_chunks} chunks, imsize {args.imsize}, "
        f"threshold {args.threshold}, {args.cycles} cycles in the graph, {os.cpu_count()} cores"
    )
    print(f"{'':18s}{'wall [s]':>10s}{'peak RSS [MiB]':>16s}")
    for name, figure in figures.items():
        print(f"{name:18s}{figure['seconds']:10.1f}{figure['peak_mib']:16.0f}")
    one, two = figures["radio_clean -j 1"]["seconds"], figures["radio_clean -j 2"]["seconds"]
    serial = figures["tclean (serial)"]["seconds"]
    print(f"speed-up of -j 2 over -j 1: {one / two:.2f}")
    print(f"radio_clean -j 2 / tclean: {two / serial:.2f}")


if __name__ == "__main__":
    main()
