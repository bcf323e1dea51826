"""``radio-clean image``: tclean's parameters in, the CLEAN loop run in this process, FITS out."""

from __future__ import annotations

__all__ = [
    "ImagingError",
    "ImagingRun",
    "describe",
    "image_measurement_sets",
    "read_parameters",
]

import dataclasses
import datetime
import logging
import os
from collections.abc import Sequence
from typing import Any

import yaml

from .chunks import ChunkError, chunk_ranges, define_channel_chunks, output_channel_count
from .export import export_cube_products, export_products
from .ingest import INGEST_RUN, ingest_measurement_sets
from .loop import CleanLoop, LoopError
from .parameters import CleanParametersConfig, ParameterError, parse_parameter
from .pipeline import LAYOUTS, TASK_KINDS, label_of, pipeline_for, to_yaml
from .preflight import check_before_work, check_visibilities_readable
from .repo import create_repo, open_repo
from .selection import parse_field_selection, selection_query
from .tasks.base import CHUNK_DATASET_PREFIX

_log = logging.getLogger(__name__)

# tclean parameters that choose data IDs rather than configure the tasks.
_SELECTION_PARAMETERS = ("field",)


class ImagingError(RuntimeError):
    """The imaging run cannot start or did not finish; the message says why."""


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

    Returns
    -------
    run : `ImagingRun`
        Collection, pipeline file and per-field/band summaries.
    """
    check_before_work(
        ms_paths,
        parameters,
        fields=fields,
        jobs=jobs,
        chunk_channels=chunk_channels,
        repo=repo,
        export_dir=export_dir,
        check_resources_needed=check_resources,
    )
    if not os.path.exists(os.path.join(repo, "butler.yaml")):
        create_repo(repo).close()
    butler = open_repo(repo, writeable=True)
    try:
        # The run reads each MS from the path given here (a moved or copied MS included).
        outcomes = ingest_measurement_sets(butler, ms_paths, staging_root=repo, read_given_paths=True)
        inputs = list(dict.fromkeys([*(outcome.collection for outcome in outcomes), INGEST_RUN]))
        names = [outcome.observation for outcome in outcomes]
        observations = [
            record.id
            for record in butler.registry.queryDimensionRecords("observation")
            if record.name in names
        ]
        check_visibilities_readable(butler, inputs, observations)
        query = f"observation IN ({', '.join(str(o) for o in observations)})"
        query += selection_query(butler, observations, fields, parameters)
        if _is_cube(parameters):
            instruments = {
                r.instrument
                for r in butler.registry.queryDimensionRecords("observation")
                if r.id in observations
            }
            query += f" AND ({_define_chunks(butler, query, instruments, parameters, chunk_channels, jobs)})"
    finally:
        butler.close()
    for outcome in outcomes:
        _log.info("%s", outcome.message)
    output = output or f"images/{datetime.datetime.now(datetime.UTC):%Y%m%dT%H%M%S}"
    os.makedirs(export_dir, exist_ok=True)
    pipeline_path = os.path.abspath(os.path.join(export_dir, "pipeline.yaml"))
    with open(pipeline_path, "w") as stream:
        pipeline = pipeline_for(_pipeline_parameters(parameters), n_observations=len(observations))
        stream.write(to_yaml(_with_task_configs(pipeline, task_configs)))
    loop = CleanLoop(repo, pipeline_uri=pipeline_path, inputs=inputs, output=output, where=query, jobs=jobs)
    try:
        loop.run()
    except LoopError as err:
        raise ImagingError(str(err)) from None
    return ImagingRun(
        collection=output,
        pipeline_path=pipeline_path,
        summaries=_export(repo, output, parameters, export_dir),
    )


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
    if not selections:
        raise ImagingError("The MeasurementSets have no band with the fields asked for.")
    return " OR ".join(selections)


def _export(
    repo: str, collection: str, parameters: CleanParametersConfig, export_dir: str
) -> list[dict[str, Any]]:
    cube = _is_cube(parameters)
    summary_type = CHUNK_DATASET_PREFIX + "clean_summary" if cube else "clean_summary"
    export = export_cube_products if cube else export_products
    with open_repo(repo, collections=collection) as butler:
        refs = butler.query_datasets(summary_type, collections=collection, explain=False)
        data_ids = [
            dict(instrument=r.dataId["instrument"], field=r.dataId["field"], band=r.dataId["band"])
            for r in refs
        ]
        data_ids = list({tuple(data_id.items()): data_id for data_id in data_ids}.values())
        summaries = []
        for data_id in data_ids:
            directory = (
                export_dir
                if len(data_ids) == 1
                else os.path.join(export_dir, f"{data_id['field']}_{data_id['band']}")
            )
            summaries.append({**export(butler, data_id, parameters, directory), "directory": directory})
    return summaries


def describe(run: ImagingRun) -> str:
    """Tell the user where everything is."""
    lines = []
    for summary in run.summaries:
        lines.append(
            f"{summary['field']} in {summary['band']}: {summary['stop_reason']} after {summary['iterdone']} "
            f"iterations and {summary['nmajordone']} major cycles; FITS and PNG files in "
            f"{summary['directory']}."
        )
    lines.append(
        f"All images are also in the repository, collection {run.collection}; pipeline: {run.pipeline_path}."
    )
    return "\n".join(lines)
