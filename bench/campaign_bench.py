"""Campaign scale without CASA: graph building and bookkeeping of the CLEAN loop over N field chains.

Not a test: prints a table. Usage::

    .venv/bin/python bench/campaign_bench.py [--chains 100,1000] [--big] [--bands 1]
        [--sample-chains 20] [--full-loop-max 100] [--bps-chains 100,1000] [--repeat 3]
        [--workdir /tmp/radio_clean-campaign-bench] [--keep]

For every N a repository of N fields x ``--bands`` bands is made without
any MeasurementSet (`radio_clean.campaign.synthetic_repository`: the
dimension records and ``visibilities`` datasets that ingest would register),
and the loop's steps are driven with the middleware's mock tasks
(`radio_clean.loop.MockRun`, ``lsst.pipe.base.tests.mocks``), so what is
measured is graph building, execution bookkeeping and registration, not
imaging. Columns:

``start graph``
    Building the ``start`` step's graph over all N chains (a data query).
``cycle graph``
    Building one ``cycle`` step's graph over all N chains from the start
    graph (`radio_clean.cycle_graph.NextCycleGraphBuilder`, as the loop does).
``quanta``
    Quanta of the start and cycle graphs.
``dataset types``
    Dataset types registered in the repository after the two steps.
``registry``
    Size of the SQLite registry file after the sample below ran.
``s/quantum``
    Bookkeeping per quantum: the start step of ``--sample-chains`` chains
    out of the N (quanta run by the mock tasks in this process through the
    loop's executor, then their outputs registered), divided by its quanta.
    For N <= ``--full-loop-max`` also the whole loop (start, two cycles,
    finish) over all N chains in this process: its quanta, its wall time
    (graphs, execution, registration) and the execution and registration
    time per quantum.
``bps s/step`` (a second table)
    For each N of ``--bps-chains``: the whole loop of N chains with the mock
    tasks stopping at minor cycle 2 (start, cycle001, finish002), each step
    a ``bps submit`` of ``bps/campaign_local.yaml`` (parsl, local site, the
    step in two jobs of ``pipetask run-qbb``), into a repository of its own;
    seconds of each step from ``bps submit`` to its outputs registered by
    the final job, and those seconds per quantum. Not by default: minutes
    of both cores per step at 1,000 chains.

The machine this runs on is shared: with ``--repeat`` the small N are
measured several times and medians printed; ``--big`` adds N = 10,000
(measured once).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lsst.daf.butler import Butler

from radio_clean.campaign import synthetic_repository
from radio_clean.ingest import INGEST_RUN
from radio_clean.loop import (
    CleanLoop,
    DatasetMemo,
    LoopError,
    MockRun,
    _execute_quanta,
    _Step,
    _step_butler,
    step_run,
)

CHECKOUT = Path(__file__).resolve().parents[1]
PIPELINE = str(CHECKOUT / "pipelines" / "ContinuumImaging.yaml")
BPS_CAMPAIGN = str(CHECKOUT / "bps" / "campaign_local.yaml")
OUTPUT = "bench/run"


def graphs_and_sample(root: str, n_sample: int) -> dict[str, float]:
    """Build the start and first cycle graphs over every chain; run the start step of a sample."""
    loop = CleanLoop(root, pipeline_uri=PIPELINE, inputs=[INGEST_RUN], output=OUTPUT, mock=MockRun(cycles=3))
    figures: dict[str, float] = {}
    with Butler.from_config(root, writeable=True) as butler:
        loop._prepare_output(butler)
        start = _Step("start", step_run(OUTPUT, "start"), 0, 1)
        pipeline_graph = loop._pipeline_graph(start)
        pipeline_graph.resolve(butler.registry)
        loop._register_dataset_types(butler, pipeline_graph, start)
        began = time.perf_counter()
        graph = loop._build_graph(butler, pipeline_graph, start, None, "", {}, False).assemble()
        figures["start_graph_s"] = time.perf_counter() - began
        figures["start_quanta"] = len(graph)
        chains = sorted({_chain(graph, q) for q in graph}, key=str)
        loop._previous_graph = graph
        cycle = _Step("cycle", step_run(OUTPUT, "cycle", 1), 1, 2)
        cycle_graph = loop._pipeline_graph(cycle)
        cycle_graph.resolve(butler.registry)
        loop._register_dataset_types(butler, cycle_graph, cycle)
        began = time.perf_counter()
        built = loop._build_graph(butler, cycle_graph, cycle, chains, "", {}, False).assemble()
        figures["cycle_graph_s"] = time.perf_counter() - began
        figures["cycle_quanta"] = len(built)
        del built
        # The start step of a sample of chains, as the loop runs and registers it.
        sample = set(chains[:n_sample])
        quantum_ids = [q for q in graph if _chain(graph, q) in sample]
        butler.collections.register(start.run)
        butler.collections.prepend_chain(OUTPUT, start.run)
        began = time.perf_counter()
        with _step_butler(graph, quantum_ids, loop._butler_config) as qbb:
            loop._initialize_run(qbb, graph, start)
            outcomes = _execute_quanta(graph, quantum_ids, qbb, DatasetMemo())
            loop._register(butler, qbb, graph, outcomes, written_here=True, with_packages=True)
        figures["sample_s_per_quantum"] = (time.perf_counter() - began) / len(quantum_ids)
        figures["dataset_types"] = len(butler.registry.queryDatasetTypes())
    figures["registry_bytes"] = os.path.getsize(os.path.join(root, "gen3.sqlite3"))
    return figures


def _chain(graph, quantum_id) -> tuple:
    data_id = graph.quantum_only_xgraph.nodes[quantum_id]["data_id"]
    return tuple((name, data_id[name]) for name in ("instrument", "field", "band"))


def full_loop(root: str, bps_submit: str | None = None, cycles: int = 3) -> dict[str, Any]:
    """The whole loop (start, cycle001, ..., finishNNN) over every chain; time per quantum, per step."""
    loop = CleanLoop(
        root,
        pipeline_uri=PIPELINE,
        inputs=[INGEST_RUN],
        output="bench/full",
        mock=MockRun(cycles=cycles),
        bps_submit=bps_submit,
    )
    began = time.perf_counter()
    loop.run()
    elapsed = time.perf_counter() - began
    quanta = sum(record.quanta for record in loop.steps)
    return {
        "full_s_per_quantum": sum(r.run_seconds for r in loop.steps) / quanta,
        "full_quanta": quanta,
        "s_per_step": statistics.median(record.run_seconds + record.graph_seconds for record in loop.steps),
        "full_s": elapsed,
        "steps": [(os.path.basename(r.run), r.quanta, r.graph_seconds + r.run_seconds) for r in loop.steps],
    }


def bps_loop(root: str, n_chains: int) -> dict[str, Any]:
    """The whole loop of ``n_chains`` mock chains, each step a ``bps submit`` of bps/campaign_local.yaml."""
    synthetic_repository(root, n_fields=n_chains, n_bands=1)
    cwd = os.getcwd()
    saved = {name: os.environ.get(name) for name in ("PWD", "PATH", "HTTPS_PROXY", "https_proxy")}
    # bps writes submit/ under ${PWD}, parsl its runinfo/ in the working directory.
    os.chdir(root)
    os.environ["PWD"] = root
    # bps and its jobs call pipetask and butler by name.
    os.environ["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"
    # parsl's HighThroughputExecutor may ask api.ipify.org for this machine's public address (30 s
    # time-out without a network): a closed local port as proxy makes that fail at once.
    os.environ["HTTPS_PROXY"] = os.environ["https_proxy"] = "http://127.0.0.1:9"
    try:
        return full_loop(root, bps_submit=BPS_CAMPAIGN, cycles=2)
    finally:
        os.chdir(cwd)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def main(argv: list[str] | None = None) -> int:
    """Make the repositories, measure, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", default="100,1000", help="Comma-separated N (fields; default 100,1000).")
    parser.add_argument("--big", action="store_true", help="Add N = 10000 (once).")
    parser.add_argument("--bands", type=int, default=1, help="Bands per field (default 1).")
    parser.add_argument("--sample-chains", type=int, default=20, help="Chains whose start step runs.")
    parser.add_argument("--full-loop-max", type=int, default=100, help="Whole loop in-process up to this N.")
    parser.add_argument(
        "--bps-chains", default="", help="Comma-separated N of whole loops under bps (default: none)."
    )
    parser.add_argument("--repeat", type=int, default=3, help="Runs of each N below 10000 (medians).")
    parser.add_argument("--workdir", default=None, help="Where the repositories go (default a temp dir).")
    parser.add_argument("--keep", action="store_true", help="Keep the repositories.")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.chains.split(",") if n]
    if args.big:
        sizes.append(10000)
    workdir = args.workdir or tempfile.mkdtemp(prefix="radio_clean-campaign-bench-")
    os.makedirs(workdir, exist_ok=True)
    rows = []
    try:
        for n in sizes:
            runs = []
            for repeat in range(1 if n >= 10000 else args.repeat):
                root = os.path.join(workdir, f"n{n}-{repeat}")
                began = time.perf_counter()
                synthetic_repository(root, n_fields=n, n_bands=args.bands)
                figures = {"repo_s": time.perf_counter() - began}
                figures.update(graphs_and_sample(root, args.sample_chains))
                if n <= args.full_loop_max:
                    figures.update(full_loop(root))
                runs.append(figures)
                print(f"N={n} run {repeat + 1}: {figures}", file=sys.stderr, flush=True)
                if not args.keep:
                    shutil.rmtree(root)
            row = {key: statistics.median(run[key] for run in runs) for key in runs[0] if key != "steps"}
            rows.append((n * args.bands, len(runs), row))
        bps_rows = []
        for n in [int(n) for n in args.bps_chains.split(",") if n]:
            try:
                bps_rows.append((n, bps_loop(os.path.join(workdir, f"bps{n}"), n)))
                print(f"bps N={n}: {bps_rows[-1][1]}", file=sys.stderr, flush=True)
            except LoopError as err:
                print(f"bps over {n} chains failed: {err}", file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if rows:
        print(
            f"{'chains':>7} {'runs':>4} {'repo s':>7} {'start graph s':>13} {'cycle graph s':>13} "
            f"{'start q':>7} {'cycle q':>7} {'dataset types':>13} {'registry MB':>11} "
            f"{'s/quantum sample':>16} {'s/quantum loop':>14} {'loop quanta':>11} {'loop s':>7}"
        )
        for chains, runs, row in rows:
            loop_cost = f"{row['full_s_per_quantum']:.3f}" if "full_s_per_quantum" in row else "-"
            loop_quanta = f"{int(row['full_quanta'])}" if "full_quanta" in row else "-"
            loop_seconds = f"{row['full_s']:.0f}" if "full_s" in row else "-"
            print(
                f"{chains:>7} {runs:>4} {row['repo_s']:>7.1f} {row['start_graph_s']:>13.1f} "
                f"{row['cycle_graph_s']:>13.1f} {int(row['start_quanta']):>7} {int(row['cycle_quanta']):>7} "
                f"{int(row['dataset_types']):>13} {row['registry_bytes'] / 1e6:>11.1f} "
                f"{row['sample_s_per_quantum']:>16.3f} {loop_cost:>14} {loop_quanta:>11} {loop_seconds:>7}"
            )
    if bps_rows:
        print(
            "\nbps (parsl, local site, bps/campaign_local.yaml: each step 2 jobs of pipetask run-qbb), "
            "seconds per step (bps submit to registered outputs):"
        )
        print(f"{'chains':>7} {'step':>10} {'quanta':>7} {'seconds':>8} {'s/quantum':>9}")
        for chains, row in bps_rows:
            for step, quanta, seconds in row["steps"]:
                print(f"{chains:>7} {step:>10} {quanta:>7} {seconds:>8.0f} {seconds / max(quanta, 1):>9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
