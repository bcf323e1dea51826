"""tclean's major/minor loop, grown at run time one quantum graph per cycle.

A quantum graph is static, so the loop is a sequence of graphs of the
pipeline's subsets (see `radio_clean.pipeline`): ``start``, then ``cycle``
with ``major_cycle=cN, minor_cycle=c(N+1)`` for N = 1, 2, ... over the chains
(field, band, channel chunk) whose last iteration summary says CLEAN goes
on, then ``finish`` for each chain with the cycle it stopped at. Each graph
runs into a RUN collection of its own (``OUTPUT/start``, ``OUTPUT/cycle003``,
``OUTPUT/finish008``) at the head of the CHAINED collection ``OUTPUT``, so the
number of cycles is decided by the data exactly as tclean decides it, and no
quantum runs after a chain has stopped.

Quanta run in this process (or, with ``jobs > 1``, in worker processes that
each keep their chains, so the CASA engine stays warm) through the
middleware's `~lsst.pipe.base.single_quantum_executor.SingleQuantumExecutor`
with a quantum-backed butler, as bps runs them: datasets are written to the
datastore during a step and registered together, in one transaction, when
the step ends. Images that the next step reads are kept in memory
(`DatasetMemo`), so they are not read back from disk.

A run killed part-way is resumed by running the same command again with the
same output collection: steps already registered are skipped, and files a
killed step left unregistered are removed before it runs again.
"""

from __future__ import annotations

__all__ = [
    "ChainOutcome",
    "CleanLoop",
    "DatasetMemo",
    "LoopError",
    "LoopInterrupted",
    "LoopProgress",
    "MockRun",
    "StepRecord",
    "step_run",
]

import atexit
import contextlib
import dataclasses
import functools
import logging
import multiprocessing
import multiprocessing.util
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import lsst.pex.config as pexConfig
import yaml
from lsst.daf.butler import (
    Butler,
    ButlerConfig,
    CollectionType,
    DataCoordinate,
    DatasetRef,
    DimensionNameError,
    LimitedButler,
    MissingCollectionError,
    QuantumBackedButler,
    StorageClassConfig,
    StorageClassFactory,
)
from lsst.daf.butler.registry import ConflictingDefinitionError
from lsst.pipe.base import Pipeline, TaskFactory
from lsst.pipe.base.all_dimensions_quantum_graph_builder import AllDimensionsQuantumGraphBuilder
from lsst.pipe.base.caching_limited_butler import CachingLimitedButler
from lsst.pipe.base.pipeline_graph import compare_packages
from lsst.pipe.base.pipelineIR import ContractError
from lsst.pipe.base.quantum_graph import PredictedQuantumGraph
from lsst.pipe.base.single_quantum_executor import SingleQuantumExecutor
from lsst.resources import ResourcePath
from lsst.utils.packages import Packages

from ._background import BackgroundPreparation
from ._errors import os_error_in
from ._scratch import make_scratch_dir, process_alive, remove_stale_scratch
from ._stop import raise_if_stop_requested, stop_requested
from .cycle_graph import NextCycleGraphBuilder, UnknownInputError
from .image import RadioImage
from .ingest import VISIBILITIES
from .parameters import CleanParametersConfig, ParameterError, parse_parameter
from .pipeline import STEPS
from .repo import DIMENSIONS_CONFIG

_log = logging.getLogger(__name__)

_CHAIN_DIMENSIONS = ("instrument", "field", "band", "channel_chunk")
"""Dimensions that tell chains apart (``channel_chunk`` only in the cube pipeline)."""

_GRAPH_SCRATCH_PREFIX = "radio_clean-graphs-"
"""Scratch of the step graphs handed to worker processes."""

_MULTIPROCESSING_SCRATCH_PREFIX = "radio_clean-multiprocessing-"
"""Scratch recording where multiprocessing's temporary directory (the forkserver's socket) is."""

_TEMP_DIR_RECORD = "temp_dir"

_MEMO_STORAGE_CLASSES = frozenset({"RadioImage", "StructuredDataDict", "AutoMaskState", "MeasurementSet"})
"""What `DatasetMemo` keeps in memory: the images and states the next step reads (not logs, metadata)."""


class LoopError(RuntimeError):
    """The loop could not run a step, or a quantum failed; the message says which and what to do.

    Attributes
    ----------
    reason : `str`
        What went wrong, without the advice on resuming (for callers that
        give their own).
    failed_chains : `list` [`ChainOutcome`]
        The chains a quantum of which raised, when that is what went wrong
        (the other chains were finished).
    """

    def __init__(
        self, message: str, *, reason: str | None = None, failed_chains: Sequence[ChainOutcome] = ()
    ) -> None:
        super().__init__(message)
        self.reason = reason or message
        self.failed_chains = list(failed_chains)


class LoopInterrupted(LoopError):  # noqa: N818 (a stop, not an error of the loop)
    """The loop was stopped by a signal (``KeyboardInterrupt``); ``signal_name`` says which."""

    def __init__(self, message: str, *, signal_name: str) -> None:
        super().__init__(message, reason=f"Stopped by {signal_name}")
        self.signal_name = signal_name


def step_run(output: str, step: str, cycle: int | None = None) -> str:
    """Name of the RUN collection of one step: ``OUTPUT/start``, ``OUTPUT/cycle003``, ``OUTPUT/finish008``."""
    return f"{output}/{step}" if cycle is None else f"{output}/{step}{cycle:03d}"


@dataclasses.dataclass
class ChainOutcome:
    """How one chain (field, band, channel chunk) ended."""

    data_id: dict[str, Any]
    """The chain's data ID values (instrument, field, band and channel_chunk for cubes)."""
    summary: dict[str, Any] | None = None
    """The iteration summary of the cycle that stopped CLEAN (``None`` if the chain failed)."""
    error: str | None = None
    """What failed, if a quantum of this chain raised."""


@dataclasses.dataclass(frozen=True)
class LoopProgress:
    """How far the loop is, after a step: counts of chains (field, band, channel chunk)."""

    step: str
    """The RUN collection of the step just done (``OUTPUT/cycle003``)."""
    converged: int
    """Chains whose restored images are made (CLEAN stopped and the finish step ran)."""
    failed: int
    """Chains a quantum of which raised (they wait for a retry)."""
    remaining: int
    """Chains still cleaning, or stopped and waiting for their finish step."""
    elapsed: float
    """Seconds since the loop started."""
    iterdone: int = 0
    """Minor-cycle iterations done so far, summed over the chains."""


@dataclasses.dataclass
class StepRecord:
    """What one step of the loop did, for progress reports and benchmarks."""

    run: str
    """The step's RUN collection."""
    quanta: int
    """Quanta run (or, under bps, submitted) in this process's graph of the step."""
    chains: list[tuple]
    """Chains that had quanta to run in the step (not those skipped as done before)."""
    graph_seconds: float
    """Time to build the step's quantum graph (0 under bps: bps builds it)."""
    run_seconds: float
    """Time to run the quanta and register their outputs (the whole submission under bps)."""


@dataclasses.dataclass(frozen=True)
class MockRun:
    """Run the loop with the middleware's mock tasks instead of CASA: bookkeeping alone, at any scale.

    Every task is replaced by `lsst.pipe.base.tests.mocks.MockPipelineTask`
    (outputs are small mock datasets; the ``visibilities`` are not read), so
    graph building, execution and registration are exercised without
    imaging. A mock iteration summary says CLEAN stops after ``cycles``
    minor cycles for every chain.
    """

    cycles: int = 2
    """Minor cycle at which every chain stops (2: start, cycle001, finish002)."""
    failures: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Task label -> data query condition (``field = 'f0003'``) of quanta that raise (`ValueError`).

    The failures are not settings: a run resumed without them (the retry of
    the failed chains) is the same run."""


class DatasetMemo:
    """Datasets put or read in this process, kept in memory for the next step.

    Keyed by dataset ID, so an entry is the dataset itself, never a look-alike.
    An entry is dropped once a whole step has passed without using it: what
    every step reads (MakePsf's images, the MeasurementSets) stays while its
    chain goes on, what a step made stays for the next one.
    """

    def __init__(self) -> None:
        self._entries: dict[uuid.UUID, tuple[Any, int]] = {}
        self.step = 0

    def __contains__(self, ref: DatasetRef) -> bool:
        return ref.id in self._entries

    def get(self, ref: DatasetRef) -> Any:
        value, _ = self._entries[ref.id]
        self._entries[ref.id] = (value, self.step)
        return value

    def add(self, ref: DatasetRef, value: Any) -> None:
        if ref.datasetType.storageClass_name in _MEMO_STORAGE_CLASSES:
            self._entries[ref.id] = (value, self.step)

    def next_step(self) -> None:
        """Start a new step; drop what the step just finished did not use."""
        self._entries = {key: entry for key, entry in self._entries.items() if entry[1] >= self.step}
        self.step += 1


class _MemoButler(CachingLimitedButler):
    """A quantum-backed butler whose gets and puts go through a `DatasetMemo`."""

    def __init__(self, wrapped: LimitedButler, memo: DatasetMemo) -> None:
        super().__init__(wrapped)
        self._memo = memo

    def get(self, ref, /, *, parameters=None, storageClass=None):
        if ref in self._memo and not parameters and storageClass is None:
            return _copy(self._memo.get(ref))
        value = self._wrapped.get(ref, parameters=parameters, storageClass=storageClass)
        if not parameters and storageClass is None:
            self._memo.add(ref, value)
            return _copy(value)
        return value

    def stored_many(self, refs):
        refs = list(refs)
        known = {ref: True for ref in refs if ref in self._memo}
        return {**self._wrapped.stored_many([ref for ref in refs if ref not in known]), **known}

    def put(self, obj, ref, /, *, provenance=None):
        stored = self._wrapped.put(obj, ref, provenance=provenance)
        self._memo.add(ref, obj)
        return stored


def _copy(value: Any) -> Any:
    # Tasks get their own pixels, as from a file: nothing a task changes leaks into the next one.
    # (Summaries and states are only read; copying a summary's history every cycle would cost
    # more the longer CLEAN runs.)
    if isinstance(value, RadioImage):
        return value.replace(pixels=value.pixels.copy())
    return value


def _chain_key(data_id: DataCoordinate) -> tuple[tuple[str, Any], ...]:
    return tuple((name, data_id[name]) for name in _CHAIN_DIMENSIONS if name in data_id.dimensions.names)


@dataclasses.dataclass
class _Step:
    """One graph of the loop: which subset, with which loop parameters, into which RUN."""

    subset: str
    run: str
    major_cycle: int
    minor_cycle: int


def _step_butler(
    graph: PredictedQuantumGraph, quantum_ids: Sequence[uuid.UUID], butler_config: ButlerConfig
) -> QuantumBackedButler:
    """A quantum-backed butler that reads and writes what these quanta (and the step's init) do."""
    quanta = graph.build_execution_quanta(quantum_ids)
    inputs: set[uuid.UUID] = set()
    outputs: set[uuid.UUID] = set()
    records: dict[str, Any] = {}
    for quantum in quanta.values():
        inputs.update(ref.id for refs in quantum.inputs.values() for ref in refs)
        outputs.update(ref.id for refs in quantum.outputs.values() for ref in refs)
        for name, record_data in quantum.datastore_records.items():
            if name in records:
                records[name].update(record_data)
            else:
                records[name] = record_data
    outputs.update(ref.id for ref in _init_outputs(graph))
    return QuantumBackedButler.from_predicted(
        config=butler_config,
        predicted_inputs=inputs - outputs,
        predicted_outputs=outputs,
        dimensions=graph.pipeline_graph.universe,
        datastore_records=records,
        dataset_types={node.name: node.dataset_type for node in graph.pipeline_graph.dataset_types.values()},
    )


def _init_outputs(graph: PredictedQuantumGraph) -> list[DatasetRef]:
    """Configs of the step's tasks (and, for the start step, software versions)."""
    refs = []
    # A resumed step's graph has no init quanta for the tasks whose quanta all ran before.
    for label in (*graph.pipeline_graph.tasks, ""):
        try:
            refs.extend(graph.get_init_outputs(label).values())
        except KeyError:
            pass
    return refs


def _execute_quanta(
    graph: PredictedQuantumGraph,
    quantum_ids: Sequence[uuid.UUID],
    qbb: QuantumBackedButler,
    memo: DatasetMemo,
) -> dict[uuid.UUID, str | None]:
    """Run quanta of a step graph in order.

    Returns
    -------
    outcomes : `dict` [`uuid.UUID`, `str` or `None`]
        Quantum ID -> `None` if it ran, or what went wrong; quanta whose
        chain failed earlier in the step are not run and say so.
    """
    quanta = graph.build_execution_quanta(quantum_ids)
    nodes = graph.quantum_only_xgraph.nodes
    butler = _MemoButler(qbb, memo)
    task_factory = TaskFactory()
    outcomes: dict[uuid.UUID, str | None] = {}
    failed_chains: dict[tuple, str] = {}
    for quantum_id in quantum_ids:
        # A stop whose KeyboardInterrupt some library caught is still a stop.
        raise_if_stop_requested()
        quantum = quanta[quantum_id]
        chain = _chain_key(quantum.dataId)
        if chain in failed_chains:
            outcomes[quantum_id] = f"not run: {failed_chains[chain]}"
            continue
        task_node = nodes[quantum_id]["pipeline_node"]
        # An executor per quantum: an executor writes into each quantum's log dataset the IDs of every
        # quantum it ran before (previous_process_quanta), so one executor for a step's N quanta would
        # write N²/2 IDs (39 bytes each): ~17 GB of logs for a cycle step over 10,000 chains.
        executor = SingleQuantumExecutor(
            butler=butler,
            task_factory=task_factory,
            assume_no_existing_outputs=True,
            raise_on_partial_outputs=True,
        )
        try:
            executor.execute(task_node, quantum, quantum_id)
        except Exception as err:
            if stop_requested():
                # The stop's KeyboardInterrupt, turned into another exception on its way up.
                raise KeyboardInterrupt(stop_requested()) from err
            # A full disk or a read-only repository is said in the message; a traceback is for bugs.
            os_error = os_error_in(err)
            message = f"{task_node.label} on {dict(quantum.dataId.required)} failed: {os_error or err}"
            _log.log(logging.DEBUG if os_error else logging.ERROR, "%s\n%s", message, traceback.format_exc())
            failed_chains[chain] = message
            outcomes[quantum_id] = message
        else:
            outcomes[quantum_id] = None
    raise_if_stop_requested()
    return outcomes


class _WorkerPool:
    """Processes that each run whole chains, step after step, keeping their CASA engine warm."""

    def __init__(self, count: int, butler_config: ButlerConfig) -> None:
        # Not a plain fork: CASA's threads in this process may hold locks that a forked copy
        # would wait on forever. Workers are forked from a fresh server that has the imports.
        context = multiprocessing.get_context("forkserver")
        # Process-wide (multiprocessing has one forkserver), so set here, when the loop starts its
        # workers, never at import; the server starts with the first worker.
        context.set_forkserver_preload(["radio_clean.tasks._forkserver"])
        _record_multiprocessing_temp_dir()
        self._tasks = [context.Queue() for _ in range(count)]
        self._results = context.Queue()
        self._processes = [
            context.Process(
                target=_worker_main, args=(tasks, self._results, butler_config, os.getpid()), daemon=True
            )
            for tasks in self._tasks
        ]
        with _openmp_threads_sleep_when_idle():
            for process in self._processes:
                process.start()
        self._assignment: dict[tuple, int] = {}

    def run(self, graph_path: str, by_chain: Mapping[tuple, list[uuid.UUID]]) -> dict[uuid.UUID, str | None]:
        work: dict[int, list[uuid.UUID]] = {}
        for chain, quantum_ids in by_chain.items():
            if chain not in self._assignment:
                # A new chain goes to the worker with the fewest chains; it stays there.
                loads = [list(self._assignment.values()).count(i) for i in range(len(self._tasks))]
                self._assignment[chain] = loads.index(min(loads))
            work.setdefault(self._assignment[chain], []).extend(quantum_ids)
        for worker, quantum_ids in work.items():
            self._tasks[worker].put((graph_path, quantum_ids))
        outcomes: dict[uuid.UUID, str | None] = {}
        for _ in work:
            while True:
                try:
                    result = self._results.get(timeout=1.0)
                    break
                except queue.Empty:
                    if dead := [p.exitcode for p in self._processes if not p.is_alive()]:
                        raise LoopError(f"A worker process ended unexpectedly (exit codes {dead}).") from None
            if isinstance(result, str):
                raise LoopError(f"A worker process failed: {result}")
            outcomes.update(result)
        return outcomes

    def close(self) -> None:
        for tasks in self._tasks:
            tasks.put(None)
        for process in self._processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()


def _record_multiprocessing_temp_dir() -> None:
    """Record multiprocessing's temporary directory in scratch named by host and process.

    The forkserver listens on a socket in that directory (``pymp-*``), which
    multiprocessing removes at exit; a process killed outright leaves it. The
    next pool of workers on this host removes it, from the record. (Not made
    inside the scratch: a longer path could pass the 107 bytes a socket's path
    may have.)
    """
    remove_stale_scratch(_MULTIPROCESSING_SCRATCH_PREFIX, before_removal=_remove_recorded_temp_dir)
    _write_temp_dir_record()


@functools.cache
def _write_temp_dir_record() -> None:
    # Once per process: multiprocessing makes its directory once.
    record = make_scratch_dir(_MULTIPROCESSING_SCRATCH_PREFIX)
    atexit.register(shutil.rmtree, record, ignore_errors=True)
    with open(os.path.join(record, _TEMP_DIR_RECORD), "w") as stream:
        stream.write(multiprocessing.util.get_temp_dir())


def _remove_recorded_temp_dir(record: str) -> None:
    with contextlib.suppress(OSError):
        with open(os.path.join(record, _TEMP_DIR_RECORD)) as stream:
            temp_dir = stream.read()
        if os.path.basename(temp_dir).startswith("pymp-"):
            shutil.rmtree(temp_dir, ignore_errors=True)


@contextlib.contextmanager
def _openmp_threads_sleep_when_idle() -> Iterator[None]:
    """Start worker processes whose OpenMP threads sleep between CASA's parallel regions.

    CASA's gridders run many short OpenMP regions and GNU OpenMP lets a thread
    spin for the next one. In one process on an otherwise idle machine that
    is fastest (the 3C273 job took 11.2 s with ``OMP_WAIT_POLICY=active``,
    14.7 s passive), but workers share the cores, and the spinning threads of
    one take the cores another needs: the NGC5921 cube with ``--jobs 2`` took
    37.9 s with spinning workers and 25.6 s with sleeping ones, for the same
    pixels. The forkserver (and the workers forked from it) reads the policy
    from the environment when it starts; a policy the user set is kept.
    """
    if "OMP_WAIT_POLICY" in os.environ:
        yield
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        yield
    finally:
        del os.environ["OMP_WAIT_POLICY"]


def _worker_main(tasks, results, butler_config: ButlerConfig, loop_pid: int) -> None:
    # Ctrl-C reaches the whole process group: the loop's process handles it and tells workers to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_loop, args=(loop_pid, os.getppid()), daemon=True).start()
    # The repository's storage classes (RadioImage...) before any graph is read: a graph of mock
    # tasks makes their mock storage classes from them while it is read.
    StorageClassFactory().addFromConfig(StorageClassConfig(butler_config))
    memo = DatasetMemo()
    while True:
        try:
            task = tasks.get(timeout=1.0)
        except queue.Empty:
            if not process_alive(loop_pid):
                # The loop's process is gone (killed): nobody will read what this one makes. Idle, the
                # worker returns, so that its exit handlers remove its scratch; the watchdog thread's
                # hard exit is for a worker killed in the middle of a quantum.
                return
            continue
        if task is None:
            return
        graph_path, quantum_ids = task
        try:
            # The whole file, read in order: reading only the quanta of some IDs (seeks inside a
            # zip member) failed with EOFError from zipfile once a step had some hundreds of quanta
            # (lsst-pipe-base's multiblock reader, Python 3.12.1; 200 chains at --jobs 2).
            graph = PredictedQuantumGraph.read_execution_quanta(graph_path)
            with _step_butler(graph, quantum_ids, butler_config) as qbb:
                results.put(_execute_quanta(graph, quantum_ids, qbb, memo))
            memo.next_step()
        except BaseException:
            results.put(traceback.format_exc())


def _exit_with_loop(loop_pid: int, parent_pid: int) -> None:
    """End this worker, even in the middle of a quantum, once the loop's process is gone (SIGKILL).

    The worker's parent is the forkserver, which exits when the loop's process does.
    """
    while process_alive(loop_pid) and os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(1)


class CleanLoop:
    """Run a CLEAN pipeline's subsets until every chain has stopped, as tclean would.

    Parameters
    ----------
    repo : `str`
        Repository root (or butler.yaml).
    pipeline_uri : `str`
        Pipeline file (one of the shipped pipelines, or one written by
        `radio_clean.pipeline`), without a subset.
    inputs : `~collections.abc.Sequence` [`str`]
        Input collections (e.g. ``raw/visibilities``).
    output : `str`
        CHAINED output collection; each step's RUN collection is added at its
        head. Running again with the same output resumes.
    where : `str`, optional
        Data query (as ``pipetask run -d``) choosing fields, bands, chunks.
    bind : `~collections.abc.Mapping`, optional
        Values of identifiers in ``where``.
    jobs : `int`, optional
        Processes that run quanta; chains are shared out among them.
    config_overrides : `~collections.abc.Sequence` [`tuple` [`str`, `str`, `str`]], optional
        ``(label, name, value)`` config overrides, as ``pipetask -c
        label:name=value``; label ``parameters`` sets pipeline parameters.
    bps_submit : `str`, optional
        A bps submit file: run each step as a ``bps submit`` of the step's
        pipeline instead of in this process.
    mock : `MockRun`, optional
        Run the middleware's mock tasks instead of the pipeline's (benchmarks
        and tests of the bookkeeping). Under bps the submit file must ask
        ``pipetask qgraph`` for them too (``--mock``).
    progress : `~collections.abc.Callable`, optional
        Called with a `LoopProgress` after every step.
    """

    def __init__(
        self,
        repo: str,
        *,
        pipeline_uri: str,
        inputs: Sequence[str],
        output: str,
        where: str = "",
        bind: Mapping[str, Any] | None = None,
        jobs: int = 1,
        config_overrides: Sequence[tuple[str, str, str]] = (),
        bps_submit: str | None = None,
        mock: MockRun | None = None,
        progress: Callable[[LoopProgress], None] | None = None,
    ) -> None:
        self.repo = repo
        self.pipeline_uri = pipeline_uri
        self.inputs = list(inputs)
        self.output = output
        self.where = where
        self.bind = dict(bind or {})
        self.jobs = max(1, jobs)
        self.config_overrides = list(config_overrides)
        self.bps_submit = os.path.abspath(bps_submit) if bps_submit else None
        self.mock = mock
        self.progress = progress
        self.graph_seconds = 0.0
        self.steps: list[StepRecord] = []
        """What each step did, in order."""
        self._butler_config = ButlerConfig(repo)
        self._pipelines: dict[str, Pipeline] = {}
        self._previous_graph: PredictedQuantumGraph | None = None
        self._registered_dataset_types: set[str] = set()
        self._memo = DatasetMemo()
        self._background: BackgroundPreparation | None = None
        self._started = time.perf_counter()

    def run(self) -> list[ChainOutcome]:
        """Run every step; return how each chain ended.

        Raises
        ------
        LoopError
            If a quantum failed (the other chains are finished first) or a
            step cannot be built; the message says what to run to resume.
        """
        # Refuse bad pipelines and settings before anything is written.
        # The whole pipeline too: a subset loaded alone drops the contracts naming labels outside it.
        whole_pipeline, *_ = [self._pipeline_graph(_Step(subset, "", 1, 2)) for subset in ("", *STEPS)]
        if self.bps_submit is None:
            self._background = BackgroundPreparation(self._modules_imported_when_run(whole_pipeline))
        pool = _WorkerPool(self.jobs, self._butler_config) if self.jobs > 1 else None
        memo = self._memo
        if pool:
            remove_stale_scratch(_GRAPH_SCRATCH_PREFIX)
        scratch = make_scratch_dir(_GRAPH_SCRATCH_PREFIX) if pool else None
        try:
            with Butler.from_config(self.repo, writeable=True) as butler:
                return self._run(butler, memo, pool, scratch)
        except BaseException as err:
            signal_name = stop_requested()
            if signal_name is None and isinstance(err, KeyboardInterrupt):
                signal_name = str(err.args[0]) if err.args else "SIGINT"
            if signal_name is None:
                raise
            raise LoopInterrupted(
                f"Stopped by {signal_name}. The steps finished so far are in collection {self.output} of "
                f"{self.repo}; run the same command again with the same output collection ({self.output}) "
                "to go on.",
                signal_name=signal_name,
            ) from None
        finally:
            if pool is not None:
                pool.close()
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)

    def _modules_imported_when_run(self, pipeline_graph) -> list[str]:
        """What the pipeline's tasks import when they first run, with these settings (not mocks)."""
        if self.mock is not None:
            return []
        modules = []
        for task_node in pipeline_graph.tasks.values():
            imported_when_run = getattr(task_node.task_class, "modules_imported_when_run", None)
            if imported_when_run is not None:
                modules.extend(imported_when_run(task_node.config))
        return modules

    def _run(self, butler: Butler, memo: DatasetMemo, pool: _WorkerPool | None, scratch: str | None):
        self._prepare_output(butler)
        failed: dict[tuple, str] = {}
        summaries: dict[tuple, dict[str, Any]] = {}
        finished: set[tuple] = set()
        start = _Step("start", step_run(self.output, "start"), 0, 1)
        active = self._run_step(butler, start, None, memo, pool, scratch, failed)
        chains_seen = set(active) | set(failed)
        last_run = start.run
        cycle = 1
        while active:
            summaries.update(self._summaries(butler, active, cycle))
            # Reported once the step's summaries are read: how many iterations it brought.
            self._report(last_run, chains_seen, finished, failed, summaries)
            last_run = None
            going_on = [chain for chain in active if not summaries[chain]["stopped"]]
            for chain in active:
                summary = summaries[chain]
                if summary["stopped"]:
                    _log.info(
                        "%s: %s (stop code %d) after %d iterations and %d major cycles.",
                        _describe(chain), summary["stop_reason"], summary["stopcode"],
                        summary["iterdone"], summary["nmajordone"],
                    )  # fmt: skip
                elif summary["peak_residual_before_cycle"]:
                    # One line per cycle and chain: what an imaging log says.
                    _log.info(
                        "%s: minor cycle %d from peak residual %.4g to cycle threshold %.4g; %d iterations "
                        "so far; %.1f s.",
                        _describe(chain), cycle, summary["peak_residual_before_cycle"][-1],
                        summary["cyclethreshold"], summary["iterdone"], time.perf_counter() - self._started,
                    )  # fmt: skip
            if not going_on:
                break
            step = _Step("cycle", step_run(self.output, "cycle", cycle), cycle, cycle + 1)
            active = self._run_step(butler, step, going_on, memo, pool, scratch, failed)
            last_run = step.run
            cycle += 1
        if last_run is not None:  # a step after which no chain went on (all failed)
            self._report(last_run, chains_seen, finished, failed, summaries)
        # Each chain is restored from the cycle its summary stopped at.
        by_final_cycle: dict[int, list[tuple]] = {}
        for chain, summary in summaries.items():
            if chain not in failed:
                by_final_cycle.setdefault(int(summary["cycle"]), []).append(chain)
        for final_cycle, chains in sorted(by_final_cycle.items()):
            step = _Step("finish", step_run(self.output, "finish", final_cycle), final_cycle - 1, final_cycle)
            finished.update(self._run_step(butler, step, chains, memo, pool, scratch, failed))
            self._report(step.run, chains_seen, finished, failed, summaries)
        outcomes = [
            ChainOutcome(dict(chain), summary=summaries.get(chain) if chain not in failed else None,
                         error=failed.get(chain))
            for chain in sorted(set(summaries) | set(failed), key=str)
        ]  # fmt: skip
        if failed:
            reason = f"{len(failed)} of {len(outcomes)} chains failed: " + "; ".join(failed.values())
            raise LoopError(
                reason
                + f". The others are finished in collection {self.output} of {self.repo}; run the same "
                "command again with the same output collection to retry the failed ones.",
                reason=reason,
                failed_chains=[outcome for outcome in outcomes if outcome.error is not None],
            )
        return outcomes

    def _report(
        self,
        run: str,
        chains: set[tuple],
        finished: set[tuple],
        failed: Mapping[tuple, str],
        summaries: Mapping[tuple, Mapping[str, Any]],
    ) -> None:
        if self.progress is None:
            return
        converged = len(finished - failed.keys())
        self.progress(
            LoopProgress(
                step=run,
                converged=converged,
                failed=len(failed),
                remaining=len(chains) - converged - len(failed),
                elapsed=time.perf_counter() - self._started,
                iterdone=sum(int(summary.get("iterdone", 0)) for summary in summaries.values()),
            )
        )

    def _prepare_output(self, butler: Butler) -> None:
        try:
            chain = list(butler.collections.get_info(self.output).children)
        except MissingCollectionError:
            butler.collections.register(self.output, CollectionType.CHAINED)
            butler.collections.redefine_chain(self.output, butler.collections.query(self.inputs))
            return
        # Resuming: the run must go on with the settings (and inputs) it was started with.
        start_run = step_run(self.output, "start")
        graph = self._pipeline_graph(_Step("start", start_run, 0, 1))
        graph.resolve(butler.registry)
        for task_node in graph.tasks.values():
            config_type = task_node.init.config_output.dataset_type_name
            ref = butler.find_dataset(config_type, collections=[start_run]) if start_run in chain else None
            if ref is not None and not self._same_settings(task_node.config, butler.get(ref)):
                raise LoopError(
                    f"Output collection {self.output} was started with other settings of {task_node.label} "
                    "than these; give a new output collection, or the same settings to resume it."
                )
        missing = [name for name in butler.collections.query(self.inputs) if name not in chain]
        if missing:
            raise LoopError(
                f"Output collection {self.output} exists with other inputs (it lacks {', '.join(missing)}); "
                "give a new output collection, or the same inputs to resume it."
            )

    def _pipeline_graph(self, step: _Step):
        try:
            if step.subset not in self._pipelines:
                pipeline = Pipeline.from_uri(
                    f"{self.pipeline_uri}#{step.subset}" if step.subset else self.pipeline_uri
                )
                declared = pipeline.to_graph().tasks.keys() | {"parameters"}
                parameters = pipeline._pipelineIR.parameters.mapping
                for label, name, value in self.config_overrides:
                    if label == "parameters" and name in CleanParametersConfig._fields:
                        # Read as `radio-clean image --set` reads it: tclean's forms (imsize=512).
                        value = parse_parameter(name, value)
                        if name not in parameters:
                            # A tclean parameter the pipeline does not declare: set it in every task.
                            for task_label in declared - {"parameters"}:
                                pipeline.addConfigOverride(task_label, f"parameters.{name}", value)
                            continue
                    if label not in declared or (label == "parameters" and name not in parameters):
                        what, known = (
                            ("parameters", parameters) if label == "parameters" else ("labels", declared)
                        )
                        raise LookupError(
                            f"{label}:{name} is not in the pipeline ({what}: {', '.join(sorted(known))})"
                        )
                    pipeline.addConfigOverride(label, name, value)
                self._pipelines[step.subset] = pipeline
            graph = self._step_pipeline(step).to_graph()
            if self.mock is not None:
                # Imported here: the mocks bring click, pdb and the butler's test utilities (70 ms).
                from lsst.pipe.base.tests.mocks import ForcedFailure, mock_pipeline_graph

                graph = mock_pipeline_graph(
                    graph,
                    unmocked_dataset_types=[VISIBILITIES],
                    force_failures={
                        label: ForcedFailure(condition) for label, condition in self.mock.failures.items()
                    },
                )
            return graph
        except (
            OSError,
            LookupError,
            ValueError,
            TypeError,
            AttributeError,
            pexConfig.FieldValidationError,
            ContractError,
        ) as err:
            # The middleware wraps a Config's own validation error ("see chained exception").
            cause: BaseException | None = err
            while cause is not None and not isinstance(cause, ParameterError):
                cause = cause.__cause__
            text = str(cause or err)
            reason = text.splitlines()[0].rstrip(".") if text else type(err).__name__
            subset = f" (subset {step.subset})" if step.subset else ""
            raise LoopError(
                f"Pipeline {self.pipeline_uri}{subset} cannot be used with these settings: {reason}."
            ) from None

    def _step_pipeline(self, step: _Step) -> Pipeline:
        pipeline = Pipeline.fromPipeline(self._pipelines[step.subset])
        pipeline.addConfigOverride("parameters", "major_cycle", f"c{step.major_cycle}")
        pipeline.addConfigOverride("parameters", "minor_cycle", f"c{step.minor_cycle}")
        return pipeline

    @functools.cached_property
    def image_type(self) -> str:
        """Dataset type of the restored image (``image``, ``cube_image``; ``_mock_`` first for mocks)."""
        return self._summary_prefix + "image"

    def _run_step(
        self,
        butler: Butler,
        step: _Step,
        chains: Sequence[tuple] | None,
        memo: DatasetMemo,
        pool: _WorkerPool | None,
        scratch: str | None,
        failed: dict[tuple, str],
    ) -> list[tuple]:
        """Build and run one step's graph for ``chains`` (all chains of the query if `None`).

        Returns the chains that ran the step without failing.
        """
        raise_if_stop_requested()
        if self.bps_submit is not None:
            started = time.perf_counter()
            record = StepRecord(step.run, 0, [], 0.0, 0.0)
            ran = self._submit_step(butler, step, chains, failed, record)
            record.run_seconds = time.perf_counter() - started
            self.steps.append(record)
            return ran
        started = time.perf_counter()
        pipeline_graph = self._pipeline_graph(step)
        where, bind = self.where, self.bind
        # A step whose RUN exists was begun by an earlier, killed run: resume it.
        try:
            butler.collections.get_info(step.run)
            resumed = True
        except MissingCollectionError:
            resumed = False
        pipeline_graph.resolve(butler.registry)
        self._register_dataset_types(butler, pipeline_graph, step)
        # Built before its RUN exists (unless resumed): the builder then looks for nothing in it.
        components = self._build_graph(butler, pipeline_graph, step, chains, where, bind, resumed)
        # One transaction: the registry writes a RUN in more than one statement, and a kill between
        # them would leave a collection that is not a usable RUN.
        with butler.transaction():
            butler.collections.register(step.run, CollectionType.RUN)
            if step.run not in butler.collections.get_info(self.output).children:
                butler.collections.prepend_chain(self.output, step.run)
        graph = components.assemble()
        quantum_ids = list(graph)
        graph_seconds = time.perf_counter() - started
        self.graph_seconds += graph_seconds
        record = StepRecord(step.run, len(quantum_ids), [], graph_seconds, 0.0)
        self.steps.append(record)
        all_chains = {_chain_key(graph.quantum_only_xgraph.nodes[q]["data_id"]) for q in quantum_ids}
        if chains is None and not quantum_ids:
            # Nothing to do: the start step is done (a resumed run), or the query matched nothing.
            done = self._chains_with(butler, self._summary_type(1))
            if not done:
                raise LoopError(
                    f"Nothing to image: no field and band of the data query ({self.where or 'everything'}) "
                    f"has visibilities in {', '.join(self.inputs)}."
                )
            return done
        if quantum_ids:
            if resumed:
                self._remove_orphans(butler, graph, step.run)
            quanta = graph.build_execution_quanta()
            by_chain: dict[tuple, list[uuid.UUID]] = {}
            for quantum_id in quantum_ids:  # in the order they must run
                by_chain.setdefault(_chain_key(quanta[quantum_id].dataId), []).append(quantum_id)
            record.chains = list(by_chain)
            with _step_butler(graph, quantum_ids, self._butler_config) as qbb:
                self._initialize_run(qbb, graph, step)
                if pool is None:
                    outcomes = _execute_quanta(graph, quantum_ids, qbb, memo)
                    memo.next_step()
                else:
                    graph_path = os.path.join(scratch, f"{os.path.basename(step.run)}.qg")
                    components.write(graph_path)
                    outcomes = pool.run(graph_path, by_chain)
                start = step.subset == "start"
                if start:
                    # After the quanta: the versions are computed on the second thread meanwhile.
                    self._write_packages(qbb, graph)
                self._register(butler, qbb, graph, outcomes, written_here=pool is None, with_packages=start)
            for chain, ids in by_chain.items():
                errors = [outcomes[q] for q in ids if outcomes.get(q)]
                if errors:
                    failed[chain] = errors[0]
            self._previous_graph = graph if step.subset != "finish" else None
        record.run_seconds = time.perf_counter() - started - graph_seconds
        if chains is None and resumed:
            # Chains whose start step ran before go on too: one may have failed in a later step.
            all_chains |= set(self._chains_with(butler, self._summary_type(1)))
        ran = sorted(all_chains if chains is None else set(chains), key=str)
        return [chain for chain in ran if chain not in failed]

    def _register_dataset_types(self, butler: Butler, pipeline_graph, step: _Step) -> None:
        if step.subset == "start":
            pipeline_graph.register_dataset_types(butler, include_packages=True)
            self._registered_dataset_types.update(pipeline_graph.dataset_types.keys())
            return
        # Later steps add the dataset types of their cycle (residual_c4...) or the final products;
        # the rest are registered (and checked against the repository's) by the steps before.
        for node in pipeline_graph.dataset_types.values():
            if node.name not in self._registered_dataset_types:
                butler.registry.registerDatasetType(node.dataset_type)
                self._registered_dataset_types.add(node.name)

    def _build_graph(self, butler, pipeline_graph, step, chains, where, bind, resumed):
        """Make a step's quantum graph: from the previous step's graph if it can, else by a data query."""
        if step.subset != "start" and self._previous_graph is not None and not resumed:
            wanted, copied = set(chains), set()

            def keep(data_id: DataCoordinate) -> bool:
                chain = _chain_key(data_id)
                if chain in wanted:
                    copied.add(chain)
                    return True
                return False

            try:
                components = NextCycleGraphBuilder(
                    pipeline_graph,
                    butler,
                    previous=self._previous_graph,
                    keep=keep,
                    output_run=step.run,
                    input_collections=[self.output],
                ).finish(output=self.output, metadata={"data_query": where}, attach_datastore_records=True)
                # A chain that left the loop before the previous step (a finish step of an earlier
                # cycle) is not in the previous graph.
                if copied != wanted:
                    raise UnknownInputError(f"{len(wanted - copied)} chains are not in the previous graph.")
                return components
            except (UnknownInputError, DimensionNameError) as err:
                _log.debug("Building %s with a data query: %s", step.run, err)
        return AllDimensionsQuantumGraphBuilder(
            pipeline_graph,
            butler,
            where=where,
            bind=bind,
            data_id_tables=[] if chains is None else [_chain_table(chains)],
            output_run=step.run,
            input_collections=[self.output],
            skip_existing_in=[step.run] if resumed else [],
        ).finish(output=self.output, metadata={"data_query": where}, attach_datastore_records=True)

    def _submit_step(
        self,
        butler: Butler,
        step: _Step,
        chains: Sequence[tuple] | None,
        failed: dict[tuple, str],
        record: StepRecord,
    ) -> list[tuple]:
        """Run one step as a bps submission; return the chains that made its outputs.

        A step whose RUN collection exists (its final job has registered it) is
        not submitted again: running the same command again goes on after the
        steps already done. A step submitted before whose outputs were never
        registered (bps was killed) is finished with ``bps restart`` instead.
        """
        from lsst.ctrl.bps import BPS_DEFAULTS, BPS_SEARCH_ORDER, BpsConfig
        from lsst.daf.butler import MissingDatasetTypeError

        config = BpsConfig(self.bps_submit, search_order=BPS_SEARCH_ORDER, defaults=BPS_DEFAULTS)
        config[".bps_cmdline.output"] = self.output
        config[".bps_cmdline.outputRun"] = step.run
        submit_path = config["submitPath"]
        restart = (
            f"`bps restart --wms-service-class {config['wmsServiceClass']} --id {submit_path}` "
            f"(from {os.getcwd()})"
        )

        def datasets_in_run(dataset_type: str) -> list[DatasetRef]:
            butler.registry.refresh()
            try:
                return butler.query_all_datasets(step.run, name=dataset_type, find_first=False, limit=None)
            except (MissingCollectionError, MissingDatasetTypeError):
                return []

        def chains_in_run(dataset_type: str) -> set[tuple]:
            return {_chain_key(ref.dataId) for ref in datasets_in_run(dataset_type)}

        product = self._summary_type(step.minor_cycle) if step.subset != "finish" else self.image_type
        returncode = None
        if chains_in_run("*"):
            _log.info("Step %s: done before, not submitted again.", os.path.basename(step.run))
        elif os.path.exists(submit_path):
            raise LoopError(
                f"Step {step.run} was submitted before and its outputs were never registered (bps stopped "
                f"before its final job). Finish it with {restart}, then run this command again; if it "
                f"stopped before running any job, remove {submit_path} and run this command again."
            )
        else:
            directory = tempfile.mkdtemp(prefix="radio_clean-bps-")
            try:
                # The step's pipeline with every setting in it, so that bps needs no -c options.
                pipeline_path = os.path.join(directory, f"{os.path.basename(step.run)}.yaml")
                self._step_pipeline(step).write_to_uri(pipeline_path)
                # Jobs may run elsewhere (a cluster's nodes): a repository directory by absolute path.
                repo = os.path.abspath(self.repo) if os.path.exists(self.repo) else self.repo
                submit_file, environment = self.bps_submit, None
                if self.mock is not None:
                    submit_file = self._mock_submit_file(config, directory)
                    config = BpsConfig(submit_file, search_order=BPS_SEARCH_ORDER, defaults=BPS_DEFAULTS)
                    environment = _mock_environment()
                command = [
                    os.path.join(os.path.dirname(sys.executable), "bps"), "submit", submit_file,
                    "-b", repo, "-i", ",".join(self.inputs), "-o", self.output, "--output-run", step.run,
                    "-p", pipeline_path, "-d", self._literal_query(),
                    *self._chain_table_options(config, chains, directory),
                ]  # fmt: skip
                _log.info("Step %s: %s", os.path.basename(step.run), shlex.join(command))
                returncode = subprocess.run(command, env=environment).returncode
            finally:
                shutil.rmtree(directory, ignore_errors=True)
            # Every quantum that ran wrote its metadata.
            metadata = [ref for ref in datasets_in_run("*_metadata") if ref.dataId.dimensions.names]
            record.quanta = len(metadata)
            record.chains = sorted({_chain_key(ref.dataId) for ref in metadata}, key=str)
        made = chains_in_run(product)
        # Without a list of chains (the start step), those that logged anything were in the step.
        expected = made | chains_in_run("*_log") if chains is None else set(chains)
        exit_code = "" if returncode is None else f"; bps submit exit code {returncode}"
        for chain in expected - made:
            failed[chain] = (
                f"bps step {step.run} made no {product} for {_describe(chain)} (the job logs are under "
                f"{submit_path}/logs{exit_code}); after fixing the cause, run its failed jobs again with "
                f"{restart} before running this command again"
            )
        if chains is None and not made:
            raise LoopError(
                f"bps step {step.run} made nothing{exit_code}; its log above and the job logs under "
                f"{submit_path}/logs say why."
            )
        return sorted(made & expected, key=str)

    def _mock_submit_file(self, config, directory: str) -> str:
        """Write a submit file that includes ``self.bps_submit`` and runs the step with mock tasks.

        It asks ``pipetask qgraph`` for the middleware's mock tasks (the
        ``visibilities`` left as they are, the `MockRun`'s failures), renames
        the task labels of every cluster to those of the mock tasks
        (``_mock_makePsf``...), so that the step is clustered as the real one
        would be, and gives the final job, ``butler aggregate-graph``,
        ``--mock-storage-classes``: its scanner and ingester processes read
        the graph's mock dataset types (``_mock_RadioImage``), which
        the middleware makes only in a process that has imported its mocks.
        """
        from lsst.pipe.base.tests.mocks import get_mock_name

        mock_options = ["--mock", "--unmocked-dataset-types", VISIBILITIES]
        for label, condition in self.mock.failures.items():
            mock_options += ["--mock-failure", f"{label}::{condition}"]
        _, extra_qgraph = config.search("extraQgraphOptions", opt={"default": ""})
        _, extra_aggregate = config.search("extraAggregateOptions", opt={"default": ""})
        overrides: dict[str, Any] = {
            "includeConfigs": [self.bps_submit],
            "extraQgraphOptions": f"{extra_qgraph or ''} {shlex.join(mock_options)}".strip(),
            "extraAggregateOptions": f"{extra_aggregate or ''} --mock-storage-classes".strip(),
        }
        clusters = config["cluster"] if "cluster" in config else {}
        overrides["cluster"] = {
            name: {
                "pipetasks": ", ".join(
                    get_mock_name(label.strip()) for label in clusters[name]["pipetasks"].split(",")
                )
            }
            for name in clusters
            if "pipetasks" in clusters[name]
        }
        path = os.path.join(directory, "mock_submit.yaml")
        with open(path, "w") as stream:
            yaml.safe_dump(overrides, stream)
        return path

    @staticmethod
    def _chain_table_options(config, chains: Sequence[tuple] | None, directory: str) -> list[str]:
        """``bps submit`` options that limit a step's graph to ``chains``, through a file.

        The chains go to ``pipetask qgraph --data-id-table`` as a table, not
        into the data query: a query term per chain (~70 bytes) would grow the
        command lines of ``bps submit`` and ``pipetask qgraph`` with the
        number of chains, past what a process may be given (128 KiB an
        argument: ~1,900 chains).
        """
        if chains is None:
            return []
        table_path = os.path.join(directory, "chains.ecsv")
        _chain_table(chains).write(table_path, format="ascii.ecsv")
        # The submit file's own options are kept: the command line's value replaces the file's.
        _, extra = config.search("extraQgraphOptions", opt={"default": ""})
        return ["--extra-qgraph-options", f"{extra or ''} --data-id-table {table_path}".strip()]

    def _literal_query(self) -> str:
        # bps takes a data query without bind values: write them into the query.
        where = self.where
        for key in sorted(self.bind, key=len, reverse=True):
            value = self.bind[key]
            literal = repr(value) if isinstance(value, str) else str(value)
            where = re.sub(rf"\b{re.escape(key)}\b", lambda _: literal, where)
        return where

    def _chains_with(
        self, butler: Butler, dataset_type: str, collections: Sequence[str] | None = None
    ) -> list[tuple]:
        # check=False: the user's query may name observations without their instrument.
        refs = butler.registry.queryDatasets(
            dataset_type,
            collections=collections or [self.output],
            where=self.where,
            bind=self.bind,
            check=False,
        )
        return sorted({_chain_key(ref.dataId) for ref in refs}, key=str)

    def _summaries(self, butler: Butler, chains: Sequence[tuple], cycle: int) -> dict[tuple, dict[str, Any]]:
        if self.mock is not None:
            return {chain: self._mock_summary(cycle) for chain in chains}
        summary_type = self._summary_type(cycle)
        # The refs of the graph just run, and the summaries themselves if this process made them.
        refs = {}
        if self._previous_graph is not None:
            for quantum in self._previous_graph.build_execution_quanta().values():
                for dataset_type, output_refs in quantum.outputs.items():
                    if dataset_type.name == summary_type:
                        refs.update({_chain_key(ref.dataId): ref for ref in output_refs})
        summaries = {}
        for chain in chains:
            ref = refs.get(chain)
            if ref is not None and ref in self._memo:
                summaries[chain] = self._memo.get(ref)
            elif ref is not None:
                summaries[chain] = butler.get(ref)
            else:
                summaries[chain] = butler.get(summary_type, dict(chain), collections=self.output)
        return summaries

    def _mock_summary(self, cycle: int) -> dict[str, Any]:
        """The iteration summary of minor cycle ``cycle`` in a `MockRun`: CLEAN stops at ``mock.cycles``."""
        stopped = cycle >= self.mock.cycles
        return {
            "cycle": cycle,
            "stopped": stopped,
            "stop_reason": "Mock run: stopped" if stopped else "",
            "stopcode": 1 if stopped else 0,
            "iterdone": cycle,
            "nmajordone": cycle + 1,
            "peak_residual_before_cycle": [],
            "cyclethreshold": 0.0,
        }

    def _same_settings(self, config: pexConfig.Config, stored: pexConfig.Config) -> bool:
        """Whether a task's config is the one stored by an earlier run of the same output collection."""
        if self.mock is not None:
            # Injected failures are not settings: the retry without them goes on with the same run.
            stored.fail_condition = config.fail_condition
            stored.fail_exception = config.fail_exception
        return config.compare(stored, shortcut=True)

    @functools.cached_property
    def _summary_prefix(self) -> str:
        graph = self._pipeline_graph(_Step("start", "", 0, 1))
        (name,) = {
            task.outputs["summary"].dataset_type_name
            for task in graph.tasks.values()
            if "summary" in task.outputs
        }
        return name.removesuffix("summary_c1")

    def _summary_type(self, cycle: int) -> str:
        """Dataset type of the iteration summary of minor cycle ``cycle`` (``cube_summary_c3`` for chunks)."""
        return f"{self._summary_prefix}summary_c{cycle}"

    def _remove_orphans(self, butler: Butler, graph: PredictedQuantumGraph, run: str) -> None:
        # A step killed part-way leaves files it wrote but never registered: outputs and configs,
        # which the datastore will not write over, and the temporary file of a write cut short.
        quantum_id = next(iter(graph))
        outputs = graph.build_execution_quanta([quantum_id])[quantum_id].outputs.values()
        predicted = str(butler.getURI(next(ref for refs in outputs for ref in refs), predict=True))
        directory = ResourcePath(predicted[: predicted.index(f"/{run}/") + len(run) + 2], forceDirectory=True)
        if not directory.exists():
            return
        refs = butler.registry.queryDatasets(..., collections=run)
        registered = {
            str(uri)
            for uris in butler.get_many_uris(refs).values()
            for uri in (uris.primaryURI, *uris.componentURIs.values())
            if uri is not None
        }
        for root, _, files in directory.walk():
            for name in files:
                uri = root.join(name)
                if str(uri) not in registered:
                    uri.remove()

    def _initialize_run(self, qbb: QuantumBackedButler, graph: PredictedQuantumGraph, step: _Step) -> None:
        # Configs (and software versions) of a resumed step are compared with those stored.
        try:
            if self.mock is None:
                graph.write_configs(qbb, compare_existing=True)
            else:
                self._write_mock_configs(qbb, graph)
        except ConflictingDefinitionError:
            raise LoopError(
                f"{step.run} was made with other settings than these; give a new output collection, or the "
                "same settings to resume it."
            ) from None
        graph.write_init_outputs(qbb, skip_existing=True)

    def _write_packages(self, qbb: QuantumBackedButler, graph: PredictedQuantumGraph) -> None:
        # PredictedQuantumGraph.write_packages with the versions computed on the second thread.
        packages = self._background.packages() if self._background else Packages.fromSystem()
        (ref,) = graph.get_init_outputs("").values()
        try:
            stored = qbb.get(ref)
        except (LookupError, FileNotFoundError):
            qbb.put(packages, ref)
            return
        try:
            updated = compare_packages(stored, packages)
        except ConflictingDefinitionError as err:
            raise LoopError(
                f"{os.path.basename(ref.run)} was made with other software versions ({err}); give a new "
                "output collection."
            ) from None
        if updated:
            qbb.pruneDatasets([ref], unstore=True, purge=True)
            qbb.put(stored, ref)

    def _write_mock_configs(self, qbb: QuantumBackedButler, graph: PredictedQuantumGraph) -> None:
        # As PredictedQuantumGraph.write_configs, comparing with `_same_settings`.
        for label, task_node in graph.pipeline_graph.tasks.items():
            try:
                ref = graph.get_init_outputs(label)["_config"]
            except KeyError:
                continue
            try:
                stored = qbb.get(ref)
            except (LookupError, FileNotFoundError):
                qbb.put(task_node.config, ref)
                continue
            if not self._same_settings(task_node.config, stored):
                raise ConflictingDefinitionError(f"{label}'s config differs from the one stored.")

    def _register(
        self,
        butler: Butler,
        qbb: QuantumBackedButler,
        graph: PredictedQuantumGraph,
        outcomes: Mapping[uuid.UUID, str | None],
        *,
        written_here: bool,
        with_packages: bool,
    ) -> None:
        # Outputs of a failed quantum stay unregistered; a resumed run removes and remakes them.
        # Software versions are written by the start step only.
        refs = [
            ref
            for ref in _init_outputs(graph)
            if (with_packages or ref.datasetType.name != "packages") and butler.get_dataset(ref.id) is None
        ]
        quanta = graph.build_execution_quanta([q for q, error in outcomes.items() if error is None])
        for quantum in quanta.values():
            for output_refs in quantum.outputs.values():
                refs.extend(output_refs)
        if written_here:
            source = qbb
        else:
            # Worker processes wrote these; a butler that reads them finds them by their paths.
            source = QuantumBackedButler.from_predicted(
                config=self._butler_config,
                predicted_inputs=[ref.id for ref in refs],
                predicted_outputs=[],
                dimensions=butler.dimensions,
                datastore_records={},
                dataset_types={
                    node.name: node.dataset_type for node in graph.pipeline_graph.dataset_types.values()
                },
            )
        try:
            # skip_missing: outputs a task did not make (an empty auto-multithresh state...).
            butler.transfer_from(source, refs, transfer="auto", skip_missing=True)
        finally:
            if source is not qbb:
                source.close()


def _mock_environment() -> dict[str, str]:
    """The environment of this process with radio_clean's storage classes on ``DAF_BUTLER_CONFIG_PATH``.

    For the processes of a bps step of mock tasks: ``pipetask
    pre-exec-init-qbb``, ``pipetask run-qbb`` and ``butler aggregate-graph``
    make the mock storage classes (``_mock_RadioImage``) from the real ones
    while they read the graph, before they read the repository's config
    (doc/pipeline.rst, "Mock tasks"). parsl's local jobs and the final job
    inherit the environment of ``bps submit``; Slurm passes it on too.
    """
    environment = dict(os.environ)
    config_dir = os.path.dirname(DIMENSIONS_CONFIG)
    path = environment.get("DAF_BUTLER_CONFIG_PATH")
    environment["DAF_BUTLER_CONFIG_PATH"] = f"{config_dir}{os.pathsep}{path}" if path else config_dir
    return environment


def _chain_table(chains: Sequence[tuple]) -> Any:
    """The chains as a table of data IDs, for the graph builder to join.

    Not a data query with one term a chain: the butler's query system turns
    an OR of ANDs into its conjunctive normal form, which grows as 3**chains.
    """
    from astropy.table import Table  # a third of a second to import; only steps for given chains need it

    names = [name for name, _ in chains[0]]
    return Table(rows=[[value for _, value in chain] for chain in chains], names=names)


def _describe(chain: tuple) -> str:
    values = dict(chain)
    text = f"{values.get('field')} in {values.get('band')}"
    if "channel_chunk" in values:
        text += f" chunk {values['channel_chunk']}"
    return text
