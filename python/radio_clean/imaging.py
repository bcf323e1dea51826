"""``radio-clean image``: tclean's parameters in, the CLEAN loop run in this process, FITS out."""

from __future__ import annotations

__all__ = [
    "ImagingError",
    "ImagingRun",
    "describe",
    "image_measurement_sets",
    "read_parameters",
]

import contextlib
import dataclasses
import datetime
import itertools
import logging
import os
import shlex
import signal
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import sqlalchemy.exc
import yaml
from lsst.daf.butler import CollectionType

from ._errors import os_error_in
from ._stop import stop_requested
from .bands import define_continuum_band, is_continuum_band
from .chunks import ChunkError, chunk_ranges, define_channel_chunks, output_channel_count
from .export import export_run, summary_line
from .ingest import INGEST_RUN, ingest_measurement_sets
from .loop import CleanLoop, LoopError, LoopInterrupted, LoopProgress
from .parameters import CleanParametersConfig, ParameterError, parse_parameter
from .pipeline import LAYOUTS, TASK_KINDS, label_of, pipeline_for, to_yaml
from .preflight import check_before_work, check_visibilities_readable
from .repo import create_repo, open_repo, repo_lock
from .selection import parse_field_selection, selection_query

_log = logging.getLogger(__name__)

# tclean parameters that choose data IDs rather than configure the tasks.
_SELECTION_PARAMETERS = ("field",)


_DATABASE_ERRORS = (sqlalchemy.exc.OperationalError,)
"""Registry writes that fail for want of room or permission (SQLite: disk full, read-only database)."""

_INIT_OUTPUT_SUFFIXES = ("_config", "packages")
"""Datasets a step writes before its quanta run: they do not make a step finished."""


class ImagingError(RuntimeError):
    """The imaging run cannot start or did not finish; the message says why.

    Attributes
    ----------
    signal_number : `int` or `None`
        The signal that stopped the run (SIGINT, SIGTERM), if one did.
    """

    def __init__(self, message: str, *, signal_number: int | None = None) -> None:
        super().__init__(message)
        self.signal_number = signal_number


@dataclasses.dataclass
class ImagingRun:
    """What ``radio-clean image`` did."""

    collection: str
    pipeline_path: str
    summaries: list[dict[str, Any]]


def read_parameters(
    params_file: str | None, settings: Sequence[str]
) -> tuple[CleanParametersConfig, list[str]]:
    """Turn ``--params FILE`` and ``--set NAME=VALUE`` into validated parameters.

    Returns
    -------
    parameters : `CleanParametersConfig`
        Validated tclean parameters.
    fields : `list` [`str`]
        The fields asked for with ``field=``, in tclean's syntax (names,
        ids, id ranges, ``4C*``), one item per comma-separated entry
        (empty: all).

    Raises
    ------
    ParameterError
        For an unknown name, a bad value, or a bad combination, before any
        work starts.
    """
    given: dict[str, Any] = {}
    if params_file is not None:
        try:
            with open(params_file) as stream:
                from_file = yaml.safe_load(stream) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ParameterError(f"Cannot read parameter file {params_file}: {err}.") from None
        if not isinstance(from_file, dict):
            raise ParameterError(f"Parameter file {params_file} must be a mapping of tclean names to values.")
        given.update({str(name): value for name, value in from_file.items()})
    for setting in settings:
        name, equals, value = setting.partition("=")
        if not equals:
            raise ParameterError(
                f"--set {setting!r} is not of the form NAME=VALUE (e.g. --set cell=0.5arcsec)."
            )
        given[name.strip()] = value
    fields: list[str] = []
    parameters = CleanParametersConfig()
    for name, value in given.items():
        if name in _SELECTION_PARAMETERS:
            fields = parse_field_selection(value)
            continue
        # YAML gives typed values, --set gives text; both go through the same parser.
        setattr(parameters, name, parse_parameter(name, value))
    # A region string (circle[[40pix,40pix],10pix]) is not a file; an image or region file is.
    if parameters.mask and "[" not in parameters.mask:
        parameters.mask = os.path.abspath(parameters.mask)
        if not os.path.exists(parameters.mask):
            raise ParameterError(f"mask file {parameters.mask} does not exist.")
    parameters.validate()
    return parameters, fields


def _pipeline_parameters(parameters: CleanParametersConfig) -> dict[str, Any]:
    defaults = CleanParametersConfig().toDict()
    return {name: value for name, value in parameters.toDict().items() if value != defaults[name]}


def image_measurement_sets(
    ms_paths: Sequence[str],
    *,
    repo: str,
    export_dir: str,
    parameters: CleanParametersConfig,
    fields: Sequence[str] = (),
    jobs: int = 1,
    output: str | None = None,
    chunk_channels: int | None = None,
    task_configs: Sequence[str] = (),
    check_resources: bool = True,
    command: Sequence[str] | None = None,
    progress: Callable[[LoopProgress], None] | None = None,
) -> ImagingRun:
    """Ingest, run the CLEAN loop (one quantum graph per cycle) and export FITS.

    Parameters
    ----------
    ms_paths : `~collections.abc.Sequence` [`str`]
        MeasurementSets to image (ingested if they are not yet).
    repo : `str`
        Repository; created if it does not exist.
    export_dir : `str`
        Where the FITS files go (one sub-directory per field and band when
        there is more than one).
    parameters : `CleanParametersConfig`
        tclean parameters.
    fields : `~collections.abc.Sequence` [`str`], optional
        Fields to image (default all in the MSs).
    jobs : `int`, optional
        Processes that run chains (fields, bands, channel chunks) side by side.
    output : `str`, optional
        Output collection (default ``images/<UTC time>``).
    chunk_channels : `int`, optional
        Channels per chunk of a cube (``specmode`` cube or cubedata); by
        default the cube is cut into ``jobs`` chunks.
    task_configs : `~collections.abc.Sequence` [`str`], optional
        Task config settings other than tclean parameters, as
        ``pipetask -c``: ``autoMask:implementation=casatools``.
    check_resources : `bool`, optional
        Refuse images that cannot fit in memory or on disk
        (`radio_clean.resources`); `False` tries anyway.
    command : `~collections.abc.Sequence` [`str`], optional
        The command line that started this run (``radio-clean image ...``):
        a failure after work began tells the user this command, with
        ``--output``, to resume.
    progress : `~collections.abc.Callable`, optional
        Called after every step of the loop (`radio_clean.loop.CleanLoop`).

    Returns
    -------
    run : `ImagingRun`
        Collection, pipeline file and per-field/band summaries.

    Raises
    ------
    PreflightError
        If an option, path, free space, field or MS makes the run impossible;
        nothing has been written then.
    ImagingError
        If the run failed or was stopped after work began: the message says
        what was kept and the command that goes on. An output collection this
        run made that holds no finished step is removed.
    """
    check_before_work(
        ms_paths,
        parameters,
        fields=fields,
        jobs=jobs,
        chunk_channels=chunk_channels,
        repo=repo,
        export_dir=export_dir,
        output=output,
        inputs=[INGEST_RUN],
        check_resources_needed=check_resources,
    )
    made_directories = _missing_directories(export_dir)
    pipeline_path = os.path.abspath(os.path.join(export_dir, "pipeline.yaml"))
    pipeline_existed = os.path.exists(pipeline_path)
    created = False
    finished_before = 0
    stage = "prepare"
    try:
        # Locked: runs started at once would race to insert the same MS's records and channel chunks.
        with create_repo(repo, exist_ok=True) as butler, repo_lock(repo):
            # The run reads each MS from the path given here (a moved or copied MS included).
            outcomes = ingest_measurement_sets(butler, ms_paths, staging_root=repo, read_given_paths=True)
            for outcome in outcomes:
                _log.info("%s", outcome.message)
            inputs = list(dict.fromkeys([*(outcome.collection for outcome in outcomes), INGEST_RUN]))
            query, n_observations, bands = _data_query(
                butler, outcomes, inputs, parameters, fields, chunk_channels, jobs
            )
            # Per-observation major cycles define each observation's image from its own frequencies;
            # observations of several set-ups in one band need tclean's one definition from all.
            if any(is_continuum_band(band) for band in bands):
                n_observations = 1
            pipeline = pipeline_for(_pipeline_parameters(parameters), n_observations=n_observations)
            pipeline_text = to_yaml(_with_task_configs(pipeline, task_configs))
            output, created = _reserve_output(butler, output, inputs)
            finished_before = _finished_datasets(butler, output)
        stage = "run"
        os.makedirs(export_dir, exist_ok=True)
        with open(pipeline_path, "w") as stream:
            stream.write(pipeline_text)
        loop = CleanLoop(
            repo,
            pipeline_uri=pipeline_path,
            inputs=inputs,
            output=output,
            where=query,
            jobs=jobs,
            progress=progress,
        )
        loop.run()
        stage = "export"
        summaries = export_run(repo, output, parameters, export_dir)
    except BaseException as err:
        if stop_requested() and not isinstance(err, (KeyboardInterrupt, LoopInterrupted)):
            # A library turned the stop's KeyboardInterrupt into another exception.
            err = KeyboardInterrupt(stop_requested())
        # Said in one sentence: a stop, and failures to write or of the loop once imaging began.
        expected = isinstance(err, (KeyboardInterrupt, LoopError, *_DATABASE_ERRORS)) or os_error_in(err)
        said = isinstance(err, KeyboardInterrupt) or (expected and stage != "prepare")
        with _signals_held():
            kept = stage != "prepare" and _finished_datasets_after_failure(repo, output) > finished_before
            if not kept:
                if created:
                    _discard_output(repo, output)
                if not pipeline_existed:
                    _remove_quietly(pipeline_path)
                for directory in reversed(made_directories):
                    _remove_quietly(directory, directory=True)
        if not said:
            raise
        raise _failure(err, stage=stage, repo=repo, output=output, export_dir=export_dir, kept=kept,
                       created=created, command=command) from None  # fmt: skip
    return ImagingRun(collection=output, pipeline_path=pipeline_path, summaries=summaries)


def _data_query(
    butler, outcomes, inputs, parameters, fields, chunk_channels, jobs
) -> tuple[str, int, list[str]]:
    """The data query choosing the ingested observations, fields and bands (and channel chunks).

    Also refuses a run whose MSs cannot be read. Returns the query, the number
    of observations and the bands.
    """
    names = [outcome.observation for outcome in outcomes]
    observations = [
        record.id for record in butler.registry.queryDimensionRecords("observation") if record.name in names
    ]
    check_visibilities_readable(butler, inputs, observations)
    query = f"observation IN ({', '.join(str(o) for o in observations)})"
    terms, selected_bands = selection_query(butler, observations, fields, parameters)
    query += terms
    instruments = {
        r.instrument for r in butler.registry.queryDimensionRecords("observation") if r.id in observations
    }
    bands = _bands(butler, query, instruments, observations, selected_bands, parameters)
    query += f" AND band IN ({', '.join(repr(band) for band in bands)})"
    if _is_cube(parameters):
        query += f" AND ({_define_chunks(butler, query, instruments, parameters, chunk_channels, jobs)})"
    return query, len(observations), bands


def _bands(
    butler,
    query: str,
    instruments: set[str],
    observations: list[int],
    selected: set[str] | None,
    parameters: CleanParametersConfig,
) -> list[str]:
    """The bands to image: the ingested bands the query and ``spw`` select, or for MFS their span.

    tclean's ``specmode='mfs'`` makes one image of all the spectral windows
    it selects; a cube is made per band.
    """
    bands = []
    for instrument in sorted(instruments):
        setups = sorted(
            band.name
            for band in butler.registry.queryDimensionRecords("band", where=query, instrument=instrument)
            if not is_continuum_band(band.name) and (selected is None or band.name in selected)
        )
        if len(setups) > 1 and not _is_cube(parameters):
            span = define_continuum_band(butler, instrument, setups, observations)
            _log.info("Bands %s are imaged together as band %s (specmode=mfs).", ", ".join(setups), span)
            setups = [span]
        bands += setups
    if not bands:
        raise ImagingError("The MeasurementSets have no band with the fields asked for.")
    return bands


def _reserve_output(butler, output: str | None, inputs: Sequence[str]) -> tuple[str, bool]:
    """Register the output collection, or find it; return its name and whether this run made it.

    Registering is atomic in the registry, so runs started at the same time
    never share a default name (``images/<UTC time>``, then ``-2``, ``-3``...).
    """
    inputs = butler.collections.query(list(inputs))
    if output is not None:
        names: Iterator[str] = iter([output])
    else:
        stamp = f"images/{datetime.datetime.now(datetime.UTC):%Y%m%dT%H%M%S}"
        names = (stamp if n == 1 else f"{stamp}-{n}" for n in itertools.count(1))
    for name in names:
        with butler.transaction():
            created = butler.collections.register(name, CollectionType.CHAINED)
            if created:
                butler.collections.redefine_chain(name, inputs)
        if created or output is not None:
            return name, created
    raise AssertionError("unreachable")


def _finished_datasets(butler, output: str) -> int:
    """How many datasets of finished quanta the step RUNs of ``output`` hold."""
    butler.registry.refresh()
    runs = [child for child in butler.collections.get_info(output).children if child.startswith(f"{output}/")]
    if not runs:
        return 0
    refs = butler.query_all_datasets(runs, find_first=False, limit=None)
    return sum(1 for ref in refs if not ref.datasetType.name.endswith(_INIT_OUTPUT_SUFFIXES))


def _finished_datasets_after_failure(repo: str, output: str) -> int:
    try:
        with open_repo(repo) as butler:
            return _finished_datasets(butler, output)
    except Exception:
        # The repository cannot even be read (gone read-only mid-run, disk full): keep everything.
        return 1


def _discard_output(repo: str, output: str) -> None:
    """Remove an output collection this run made, its step RUNs and any files written under its name."""
    try:
        with open_repo(repo, writeable=True) as butler:
            runs = [c for c in butler.collections.get_info(output).children if c.startswith(f"{output}/")]
            butler.collections.x_remove(output)
            if runs:
                butler.removeRuns(runs, unlink_from_chains=True)
    except Exception as err:
        _log.warning("Could not remove the unfinished output collection %s: %s", output, err)
        return
    # Files of a step that never registered them (the datastore keeps RUNs in directories of their names).
    directory = os.path.join(repo, *output.split("/"))
    if os.path.isdir(directory):
        import shutil

        shutil.rmtree(directory, ignore_errors=True)
    with contextlib.suppress(OSError):
        os.removedirs(os.path.dirname(directory))


def _missing_directories(path: str) -> list[str]:
    """The directories ``os.makedirs(path)`` would make, outermost first."""
    missing = []
    path = os.path.abspath(path)
    while not os.path.exists(path):
        missing.append(path)
        path = os.path.dirname(path)
    return missing[::-1]


def _remove_quietly(path: str, *, directory: bool = False) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(path) if directory else os.remove(path)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Let clean-up finish: a second Ctrl-C (or SIGTERM) during it is ignored."""
    previous = {number: signal.signal(number, signal.SIG_IGN) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _resume_command(command: Sequence[str] | None, output: str) -> str:
    """The command that goes on with ``output``: this one, with ``--output OUTPUT``."""
    if command is None:
        return f"the same command with --output {output}"
    words, skip = [], False
    for word in command:
        if skip:
            skip = False
        elif word == "--output":
            skip = True
        elif not word.startswith("--output="):
            words.append(word)
    return f"`{shlex.join([*words, '--output', output])}`"


def _failure(
    err: BaseException,
    *,
    stage: str,
    repo: str,
    output: str,
    export_dir: str,
    kept: bool,
    created: bool,
    command: Sequence[str] | None,
) -> ImagingError:
    """One sentence: what went wrong, what it left, and the command that goes on."""
    signal_number = None
    if stage == "prepare":
        name = str(err.args[0]) if err.args else "SIGINT"
        return ImagingError(
            f"Stopped by {name} before imaging began; no output collection was made: run the same command "
            "again to start over.",
            signal_number=int(signal.Signals[name]),
        )
    if isinstance(err, (KeyboardInterrupt, LoopInterrupted)):
        if isinstance(err, LoopInterrupted):
            name = err.signal_name
        else:
            name = str(err.args[0]) if err.args else "SIGINT"
        signal_number = int(signal.Signals[name])
        reason = f"Stopped by {name}"
    elif isinstance(err, LoopError):
        if not kept and err.reason == str(err):
            # Refused before any step ran (settings, pipeline): the loop's sentence says what to do.
            return ImagingError(str(err))
        reason = err.reason.rstrip(".")
    elif os_error := os_error_in(err):
        where = export_dir if stage == "export" else repo
        reason = f"Writing to {where} failed ({os_error.strerror or os_error})"
    else:
        reason = f"Writing to the registry of {repo} failed ({str(getattr(err, 'orig', err)).strip()})"
    resume = _resume_command(command, output)
    if stage == "export":
        state = f"the images are in collection {output} of {repo}; after fixing that, export them: {resume}"
    elif kept:
        state = f"the steps finished so far are kept in collection {output} of {repo}; to go on, run {resume}"
    elif signal_number is not None:
        state = "nothing was kept: run the same command again to start over"
    else:
        state = "nothing was kept"
    return ImagingError(f"{reason}; {state}.", signal_number=signal_number)


def _with_task_configs(pipeline: dict[str, Any], task_configs: Sequence[str]) -> dict[str, Any]:
    """Add ``KIND:NAME=VALUE`` settings to the config of the task of that kind (``autoMask``...)."""
    labels = {label_of(kind, layout): kind for layout in LAYOUTS for kind in TASK_KINDS}
    for setting in task_configs:
        target, equals, value = setting.partition("=")
        kind, colon, name = target.partition(":")
        matching = [label for label in pipeline["tasks"] if labels.get(label) == kind.strip()]
        if not (equals and colon and matching):
            raise ParameterError(
                f"--config {setting!r} is not of the form TASK:NAME=VALUE with TASK one of "
                f"{', '.join(TASK_KINDS)} (e.g. --config autoMask:implementation=casatools)."
            )
        pipeline["tasks"][matching[0]]["config"][name.strip()] = yaml.safe_load(value)
    return pipeline


def _is_cube(parameters: CleanParametersConfig) -> bool:
    return parameters.specmode in ("cube", "cubedata")


def _define_chunks(
    butler,
    query: str,
    instruments: set[str],
    parameters: CleanParametersConfig,
    chunk_channels: int | None,
    jobs: int,
) -> str:
    """Define the channel chunks of every band to image; return the data query that selects them."""
    selections = []
    bands = [
        band
        for instrument in sorted(instruments)
        for band in butler.registry.queryDimensionRecords("band", where=query, instrument=instrument)
    ]
    for band in bands:
        try:
            n_chan = output_channel_count(parameters, band.n_chan)
            ranges = chunk_ranges(n_chan, chunk_channels or -(-n_chan // max(jobs, 1)))
        except ChunkError as err:
            raise ParameterError(str(err)) from None
        for channels in ranges:
            # Refuse now, not in a task, a cube that cannot be cut there (e.g. start in velocity, no width).
            parameters.to_tclean(channels)
        ids = define_channel_chunks(butler, instrument=band.instrument, band=band.name, ranges=ranges)
        _log.info("Band %s: %d channels in %d chunks %s.", band.name, n_chan, len(ranges), ranges)
        selections.append(f"(band = '{band.name}' AND channel_chunk IN ({', '.join(map(str, ids))}))")
    return " OR ".join(selections)


def describe(run: ImagingRun) -> str:
    """Tell the user where everything is."""
    lines = [summary_line(summary) for summary in run.summaries]
    lines.append(
        f"All images are also in the repository, collection {run.collection}; pipeline: {run.pipeline_path}."
    )
    return "\n".join(lines)
