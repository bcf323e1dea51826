"""Wall time of a chunked cube with ``pipetask -j 1`` and ``-j 2``, next to tclean's serial time.

Not a test: prints figures and ratios. Usage::

    .venv/bin/python bench/cube_bench.py [--imsize 256] [--cell 8arcsec] [--chunk-channels 16]
                                         [--cycles 12] [--workdir DIR]

The cube is the VLA NGC5921 HI line (63 channels), calibrated from casadata's
UVFITS by ``radio_clean.prepare``. Both radio_clean runs image the same
channel chunks (the same quantum graph) with ``radio-clean image`` into fresh
repositories: ``--jobs 1`` in one ``pipetask run`` process, ``--jobs 2`` in
two ``pipetask run-qbb`` processes with two chunks each. Each job runs in a
fresh Python process.

How much two processes can gain on the machine at all is shown by tclean
itself: the two halves of the cube imaged one after the other, then both at
once, each process with one thread (as pipetask's workers have).
"""

import argparse
import os
import shutil
import tempfile

from continuum_bench import _measure

_N_CHANNELS = 63


def main() -> None:
    """Run the jobs and print the table."""
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
    half = _N_CHANNELS // 2 + 1
    halves = [(0, half), (half, _N_CHANNELS - half)]
    figures = {"tclean (serial)": _measure(_tclean_job(ms, workdir, "serial", parameters), workdir)}
    for label, at_once in (("tclean halves, 1 by 1", False), ("tclean halves, 2 at once", True)):
        figures[label] = _measure(_tclean_halves_job(ms, workdir, parameters, halves, at_once), workdir)
    settings = [
        f"{name}={value[0] if isinstance(value, list) else value}" for name, value in parameters.items()
    ]
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
    n_chunks = -(-_N_CHANNELS // args.chunk_channels)
    print(
        f"NGC5921 HI cube, {_N_CHANNELS} channels in {n_chunks} chunks, imsize {args.imsize}, "
        f"cell {args.cell}, threshold {args.threshold}, {args.cycles} cycles in the graph, "
        f"{os.cpu_count()} cores"
    )
    print(f"{'':26s}{'wall [s]':>10s}{'peak RSS [MiB]':>16s}")
    for name, figure in figures.items():
        print(f"{name:26s}{figure['seconds']:10.1f}{figure['peak_mib']:16.0f}")

    def seconds(name):
        return figures[name]["seconds"]

    print(
        "tclean halves, 1 by 1 / 2 at once: "
        f"{seconds('tclean halves, 1 by 1') / seconds('tclean halves, 2 at once'):.2f} "
        "(what two processes gain on this machine)"
    )
    print(f"radio_clean -j 1 / -j 2: {seconds('radio_clean -j 1') / seconds('radio_clean -j 2'):.2f}")
    print(
        f"radio_clean -j 2 / tclean (serial): {seconds('radio_clean -j 2') / seconds('tclean (serial)'):.2f}"
    )


def _tclean_job(ms, workdir, name, parameters):
    # tclean would continue from images already there.
    shutil.rmtree(os.path.join(workdir, f"tclean_{name}"), ignore_errors=True)
    return f"""
        import radio_clean
        from casatasks import tclean
        tclean(vis={ms!r}, imagename={os.path.join(workdir, f"tclean_{name}", "img")!r}, **{parameters!r})
    """


def _tclean_halves_job(ms, workdir, parameters, halves, at_once):
    """Image each half of the channels in a process of its own, one by one or both at once."""
    jobs = [
        _tclean_job(ms, workdir, f"half{start}", {**parameters, "start": start, "nchan": nchan})
        for start, nchan in halves
    ]
    return f"""
        import os, subprocess, sys, textwrap
        # One thread per process, as pipetask gives its workers.
        env = {{**os.environ, "OMP_NUM_THREADS": "1"}}
        processes = []
        for job in {jobs!r}:
            processes.append(subprocess.Popen([sys.executable, "-c", textwrap.dedent(job)], env=env))
            if not {at_once!r}:
                processes[-1].wait()
        assert all(process.wait() == 0 for process in processes)
    """


if __name__ == "__main__":
    main()
