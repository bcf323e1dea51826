"""The ``radio-clean`` command line."""

from __future__ import annotations

__all__ = ["main", "run"]

import argparse
import atexit
import gc
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from ._stop import stop_on_signals
from .casa import CasaError, set_up_casa
from .export import ExportError
from .imaging import ImagingError
from .ingest import INGEST_RUN, TRANSFER_MODES, IngestError, ingest_measurement_sets
from .loop import LoopError, LoopInterrupted
from .parameters import ParameterError
from .preflight import PreflightError, check_count, check_writable_directory
from .repo import NotARadioRepoError, RepoCreationError, create_repo, open_repo, repo_lock

# Errors whose message is already the one sentence a user should read.
_USER_ERRORS = (
    CasaError,
    IngestError,
    NotARadioRepoError,
    RepoCreationError,
    FileExistsError,
    ParameterError,
    PreflightError,
    ImagingError,
    LoopError,
    ExportError,
)


def _create_repo(args: argparse.Namespace) -> None:
    butler = create_repo(args.repo, registry_db=args.registry_db, registry_namespace=args.registry_namespace)
    butler.close()
    print(f"Created radio_clean repository {args.repo}.")


def _ingest(args: argparse.Namespace) -> None:
    butler = open_repo(args.repo, writeable=True)
    try:
        with repo_lock(args.repo):
            outcomes = ingest_measurement_sets(
                butler, args.ms, transfer=args.transfer, run=args.run, staging_root=args.repo
            )
    finally:
        butler.close()
    for outcome in outcomes:
        print(outcome.message)


def _demo_data(args: argparse.Namespace) -> None:
    from .demo import write_demo_data

    for path in write_demo_data(args.directory, datasets=tuple(args.datasets)):
        print(path)


_SOURCE_KEYS = {
    "flux": "flux_jy",
    "east": "east",
    "north": "north",
    "major": "major_arcsec",
    "minor": "minor_arcsec",
    "pa": "pa_deg",
    "alpha": "spectral_index",
}


def _sky_component(text: str):
    """``--source flux=1.2,east=30,north=-20[,major=20,minor=10,pa=45][,alpha=-0.7]`` as a SkyComponent."""
    from .simulate import SkyComponent

    values: dict[str, float] = {}
    for item in text.split(","):
        key, equals, value = item.partition("=")
        key = key.strip()
        if not equals or key not in _SOURCE_KEYS:
            known = ", ".join(f"{k}=NUMBER" for k in _SOURCE_KEYS)
            raise argparse.ArgumentTypeError(f"{item.strip()!r} in {text!r} is not one of {known}.")
        try:
            values[_SOURCE_KEYS[key]] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{key}={value!r} in {text!r} is not a number.") from None
    if "flux_jy" not in values:
        raise argparse.ArgumentTypeError(f"{text!r} has no flux=JY.")
    offset = (values.pop("east", 0.0), values.pop("north", 0.0))
    shape = "gaussian" if {"major_arcsec", "minor_arcsec"} & set(values) else "point"
    try:
        return SkyComponent(offset_arcsec=offset, shape=shape, **values)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: {err}") from None


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _simulate(args: argparse.Namespace) -> None:
    from .simulate import simulate_ms

    # Both checked before anything is written: no MS is left without the truth that was asked for.
    for path in (args.ms, args.truth):
        if path and os.path.lexists(path) and not args.overwrite:
            raise FileExistsError(f"{path} exists; --overwrite replaces it.")
    try:
        sky = simulate_ms(
            args.ms,
            args.source,
            array=args.array,
            phase_centre=args.phase_centre,
            freq_start_hz=args.freq_ghz * 1e9,
            chan_width_hz=args.channel_width_mhz * 1e6,
            n_chan=args.nchan,
            hours=args.hours,
            integration_s=args.integration,
            noise_jy=args.noise,
            seed=args.seed,
            primary_beam=args.primary_beam,
            overwrite=args.overwrite,
        )
    except ValueError as err:
        raise CasaError(f"Cannot simulate {args.ms}: {err}") from None
    frequencies = [f for window in sky.channel_freqs_hz for f in window]
    print(
        f"Wrote {sky.path}: field {sky.field_name}, {sky.n_antennas} antennas ({args.array}), "
        f"{sky.n_rows} rows, {_count(len(frequencies), 'channel')} "
        f"{min(frequencies) / 1e9:.4f}-{max(frequencies) / 1e9:.4f} GHz; "
        f"{_count(len(sky.components), 'source')}, {float(sky.flux_at(sky.ref_freq_hz)):g} Jy in all."
    )
    if args.truth:
        truth = sky.write_component_list(args.truth, overwrite=args.overwrite)
        print(f"True sky (CASA component list): {truth}")


def _image(args: argparse.Namespace, argv: Sequence[str]) -> None:
    from .imaging import describe, image_measurement_sets, read_parameters
    from .progress import ProgressLine

    parameters, fields = read_parameters(args.params, args.set)
    with ProgressLine(parameters.niter).below_logging() as progress:
        run = image_measurement_sets(
            args.ms,
            repo=args.repo,
            export_dir=args.export,
            parameters=parameters,
            fields=fields,
            jobs=args.jobs,
            chunk_channels=args.chunk_channels,
            output=args.output,
            task_configs=args.config,
            check_resources=not args.no_resource_check,
            command=["radio-clean", *argv],
            progress=progress if progress.enabled else None,
        )
    print(describe(run))


def _config_overrides(settings: Sequence[str]) -> list[tuple[str, str, str]]:
    overrides = []
    for setting in settings:
        target, equals, value = setting.partition("=")
        label, colon, name = target.partition(":")
        if not (equals and colon and label and name):
            raise ImagingError(
                f"-c {setting!r} is not of the form LABEL:NAME=VALUE (e.g. parameters:niter=5000)."
            )
        overrides.append((label.strip(), name.strip(), value))
    return overrides


def _clean(args: argparse.Namespace) -> None:
    from .loop import CleanLoop

    check_count("--jobs", args.jobs)
    overrides = _config_overrides(args.config)
    loop = CleanLoop(
        args.repo,
        pipeline_uri=args.pipeline,
        inputs=args.input or [INGEST_RUN],
        output=args.output,
        where=args.data_query,
        jobs=args.jobs,
        config_overrides=overrides,
        bps_submit=args.bps,
    )
    for outcome in loop.run():
        summary = outcome.summary
        name = ", ".join(f"{key}={value}" for key, value in outcome.data_id.items())
        print(
            f"{name}: {summary['stop_reason']} (stop code {summary['stopcode']}) after {summary['iterdone']} "
            f"iterations and {summary['nmajordone']} major cycles."
        )
    print(f"Everything is in collection {args.output} of {args.repo}.")


def _campaign(args: argparse.Namespace) -> int:
    from importlib.resources import files

    from .campaign import run_campaign
    from .loop import MockRun

    check_count("--jobs", args.jobs)
    overrides = _config_overrides(args.config)
    failures = {}
    for setting in args.mock_failure:
        label, colon, condition = setting.partition(":")
        if not (colon and label and condition):
            raise ImagingError(f"--mock-failure {setting!r} is not of the form LABEL:WHERE.")
        failures[label.strip()] = condition
    if failures and not args.mock:
        raise ImagingError("--mock-failure needs --mock.")
    if args.ms:
        butler = open_repo(args.repo, writeable=True)
        try:
            with repo_lock(args.repo):
                for outcome in ingest_measurement_sets(butler, args.ms, staging_root=args.repo):
                    print(outcome.message)
        finally:
            butler.close()
    else:
        open_repo(args.repo).close()  # one sentence if it is not a radio_clean repository
    pipeline = args.pipeline or str(files("radio_clean").joinpath("pipelines", "ContinuumImaging.yaml"))

    def progress(step) -> None:
        print(
            f"{step.step}: {step.converged} converged, {step.failed} failed, {step.remaining} remaining "
            f"({step.elapsed:.0f} s).",
            flush=True,
        )

    report = run_campaign(
        args.repo,
        pipeline_uri=pipeline,
        output=args.output,
        inputs=args.input or [INGEST_RUN],
        where=args.data_query,
        jobs=args.jobs,
        config_overrides=overrides,
        bps_submit=args.bps,
        mock=MockRun(cycles=args.mock_cycles, failures=failures) if args.mock else None,
        progress=progress,
    )
    for outcome in report.failed:
        print(f"failed: {outcome.error}")
    print(report.describe())
    if report.failed:
        print(
            f"Run the same command again (same -o {args.output}) to retry the {len(report.failed)} failed "
            "chains alone; new parameters go to a new -o, beside this one."
        )
        return 1
    return 0


def _export(args: argparse.Namespace) -> None:
    from .export import export_run, summary_line

    check_writable_directory(args.directory, option="DIRECTORY", purpose="the exported files")
    open_repo(args.repo).close()  # one sentence if it is not a radio_clean repository
    for summary in export_run(args.repo, args.collection, None, args.directory):
        print(summary_line(summary))


def _version_text() -> str:
    from importlib.metadata import version

    from .version import __version__

    engine = f"casatools {version('casatools')}, lsst-pipe-base {version('lsst-pipe-base')}"
    return f"radio-clean {__version__} ({engine})"


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="radio-clean",
        description="Radio-interferometric CLEAN imaging with the Rubin Gen3 middleware.",
    )
    parser.add_argument(
        "--log-level", default="WARNING", help="Python log level (DEBUG, INFO, WARNING); default WARNING."
    )
    parser.add_argument("--version", action="version", version=_version_text())
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    create = commands.add_parser("create-repo", help="Create a Butler repository for radio data.")
    create.add_argument("repo", help="Directory of the new repository.")
    create.add_argument(
        "--registry-db",
        default=None,
        help="SQLAlchemy URL of the registry database (e.g. postgresql://user@host/db); default SQLite.",
    )
    create.add_argument(
        "--registry-namespace",
        default=None,
        metavar="SCHEMA",
        help="Schema of the registry's tables in --registry-db: several repositories in one database.",
    )
    create.set_defaults(func=_create_repo)

    ingest = commands.add_parser("ingest", help="Register MeasurementSets as 'visibilities' datasets.")
    ingest.add_argument("repo", help="A repository made by `radio-clean create-repo`.")
    ingest.add_argument("ms", nargs="+", help="MeasurementSet directories.")
    ingest.add_argument(
        "--transfer",
        choices=TRANSFER_MODES,
        default="direct",
        help="direct: the MS stays where it is (default); symlink: link it into the repo; copy: copy it in.",
    )
    ingest.add_argument("--run", default=INGEST_RUN, help=f"RUN collection (default {INGEST_RUN}).")
    ingest.set_defaults(func=_ingest)

    demo = commands.add_parser("demo-data", help="Write the VLA demo MeasurementSets shipped with casadata.")
    demo.add_argument("directory", help="Where to write the MeasurementSets.")
    demo.add_argument(
        "--datasets",
        nargs="+",
        default=["3C273XC1"],
        choices=["3C273XC1", "NGC5921"],
        help="Which demo data to write (default 3C273XC1).",
    )
    demo.set_defaults(func=_demo_data)

    simulate = commands.add_parser(
        "simulate",
        help="Write a MeasurementSet that observes a sky you give (point and Gaussian sources).",
        description="Simulate an interferometric observation of known sources with casatools' simulator "
        "(antenna layouts from casadata, a track centred on transit, visibilities predicted analytically, "
        "optional thermal noise): a sky whose truth you know, to image and compare.",
    )
    simulate.add_argument("ms", help="The MeasurementSet to write (its directory must exist).")
    simulate.add_argument(
        "--source",
        type=_sky_component,
        action="append",
        default=[],
        metavar="SOURCE",
        help="A source, flux=JY[,east=ARCSEC,north=ARCSEC][,major=ARCSEC,minor=ARCSEC,pa=DEG][,alpha=INDEX] "
        "(repeat for more): flux density at the band centre, offset east and north of the phase centre, "
        "FWHM and position angle (east of north) of a Gaussian, spectral index.",
    )
    simulate.add_argument(
        "--array",
        default="vla.d",
        help="Antenna layout in casadata's alma/simmos, or a .cfg (default vla.d).",
    )
    simulate.add_argument(
        "--phase-centre", default="J2000 12h30m00s +10d00m00s", help="Phase centre (default %(default)s)."
    )
    simulate.add_argument("--freq-ghz", type=float, default=1.4, help="First channel's centre (default 1.4).")
    simulate.add_argument("--channel-width-mhz", type=float, default=16.0, help="Channel width (default 16).")
    simulate.add_argument("--nchan", type=int, default=4, help="Channels (default 4).")
    simulate.add_argument("--hours", type=float, default=1.0, help="Track length (default 1).")
    simulate.add_argument("--integration", type=float, default=60.0, help="Seconds per row (default 60).")
    simulate.add_argument(
        "--noise",
        type=float,
        default=0.0,
        help="Noise per visibility, real and imaginary part, Jy (default 0).",
    )
    simulate.add_argument("--seed", type=int, default=1, help="Seed of the noise (default 1).")
    simulate.add_argument(
        "--primary-beam", action="store_true", help="Attenuate the sources by the telescope's primary beam."
    )
    simulate.add_argument("--truth", help="Also write the true sky as a CASA component list here.")
    simulate.add_argument("--overwrite", action="store_true", help="Replace an existing MS (and --truth).")
    simulate.set_defaults(func=_simulate)

    image = commands.add_parser(
        "image",
        help="Image MeasurementSets with tclean's parameters in the CLEAN loop; export FITS.",
        description="Ingest the MSs (if needed), build the CLEAN quantum graph with the given tclean "
        "parameters, run the CLEAN loop in this process, and export FITS files with CASA's names.",
    )
    image.add_argument("ms", nargs="+", help="MeasurementSet directories.")
    image.add_argument("--repo", required=True, help="Repository (created if it does not exist).")
    image.add_argument("--export", required=True, help="Directory for the FITS, PNG and summary.json files.")
    image.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="Processes to run independent fields, bands and channel chunks in (default 1).",
    )
    image.add_argument("--params", help="YAML file of tclean parameters (name: value).")
    image.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="A tclean parameter as tclean writes it: cell=0.5arcsec, imsize=512,512, scales=0,5,15.",
    )
    image.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="TASK:NAME=VALUE",
        help="A task setting that is not a tclean parameter (as pipetask -c): autoMask:implementation=numpy.",
    )
    image.add_argument(
        "--output",
        help="Output collection (default images/<UTC time>); an existing one is resumed where it stopped.",
    )
    image.add_argument(
        "--chunk-channels",
        type=int,
        help="Cubes: channels per channel chunk, the unit of parallel work (default: --jobs chunks).",
    )
    image.add_argument(
        "--no-resource-check",
        action="store_true",
        help="Run even if the images look too big for this machine's memory or disk.",
    )
    image.set_defaults(func=_image, wants_argv=True)

    export = commands.add_parser(
        "export",
        help="Write the FITS, PNG and summary.json files of a finished run, with CASA's names.",
    )
    export.add_argument("repo", help="Repository.")
    export.add_argument(
        "directory", help="Where the files go (one sub-directory per field and band if several)."
    )
    export.add_argument(
        "--collection", required=True, help="Output collection of the run (e.g. images/20261202T101500)."
    )
    export.set_defaults(func=_export)

    clean = commands.add_parser(
        "clean",
        help="Run a CLEAN pipeline (pipelines/*.yaml) over a repository until tclean would stop, "
        "step by step, with pipetask's options.",
    )
    clean.add_argument("repo", help="Repository.")
    clean.add_argument(
        "-p", "--pipeline", required=True, help="Pipeline file, e.g. pipelines/ContinuumImaging.yaml."
    )
    clean.add_argument(
        "-i", "--input", action="append", help=f"Input collection (repeatable; default {INGEST_RUN})."
    )
    clean.add_argument(
        "-o", "--output", required=True, help="Output CHAINED collection; an existing one is resumed."
    )
    clean.add_argument("-d", "--data-query", default="", help="Which fields and bands, as pipetask run -d.")
    clean.add_argument(
        "-c",
        "--config",
        action="append",
        default=[],
        metavar="LABEL:NAME=VALUE",
        help="Config override as pipetask -c, e.g. parameters:niter=5000 or autoMask:implementation=numpy.",
    )
    clean.add_argument("-j", "--jobs", type=int, default=1, help="Processes running chains side by side.")
    clean.add_argument(
        "--bps",
        metavar="SUBMIT_YAML",
        help="Run each step as a bps submission of this submit file (e.g. bps/continuum_local.yaml) "
        "instead of in this process.",
    )
    clean.set_defaults(func=_clean)

    campaign = commands.add_parser(
        "campaign",
        help="Image every field and band of many MSs (or of a data query) with the CLEAN loop; "
        "report chains converged, failed and remaining; run again to retry the failed ones alone.",
        description="Ingest the MSs given (if any), then run the CLEAN loop over every field and band of "
        "the data query into the output collection, printing chains converged, failed and remaining after "
        "each step. A failed chain does not stop the others; running the same command again retries "
        "only the failed chains. New parameters belong in a new output collection (-o), beside the old.",
    )
    campaign.add_argument("repo", help="Repository (made by `radio-clean create-repo`).")
    campaign.add_argument("ms", nargs="*", help="MeasurementSets to ingest first (optional).")
    campaign.add_argument("-o", "--output", required=True, help="Output CHAINED collection of the campaign.")
    campaign.add_argument(
        "-p", "--pipeline", help="Pipeline file (default the shipped ContinuumImaging.yaml)."
    )
    campaign.add_argument(
        "-i", "--input", action="append", help=f"Input collection (repeatable; default {INGEST_RUN})."
    )
    campaign.add_argument(
        "-d", "--data-query", default="", help="Which fields and bands, as pipetask run -d (default all)."
    )
    campaign.add_argument(
        "-c",
        "--config",
        action="append",
        default=[],
        metavar="LABEL:NAME=VALUE",
        help="Config override as pipetask -c, e.g. parameters:niter=5000.",
    )
    campaign.add_argument("-j", "--jobs", type=int, default=1, help="Processes running chains side by side.")
    campaign.add_argument(
        "--bps", metavar="SUBMIT_YAML", help="Run each step as a bps submission of this submit file."
    )
    campaign.add_argument(
        "--mock",
        action="store_true",
        help="Rehearse with the middleware's mock tasks: graphs, execution and registration, no images.",
    )
    campaign.add_argument(
        "--mock-cycles", type=int, default=2, help="With --mock: minor cycles after which CLEAN stops."
    )
    campaign.add_argument(
        "--mock-failure",
        action="append",
        default=[],
        metavar="LABEL:WHERE",
        help="With --mock: quanta of task LABEL whose data ID matches WHERE raise (e.g. "
        "\"deconvolve:field = 'f00003'\").",
    )
    campaign.set_defaults(func=_campaign)
    return parser


def _exit_status(err: Exception) -> int:
    """1 for a failure; 128 + the signal number for a run stopped by a signal, as a shell reports it."""
    if isinstance(err, LoopInterrupted):
        return 128 + int(signal.Signals[err.signal_name])
    signal_number = getattr(err, "signal_number", None)
    return 128 + signal_number if signal_number else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``radio-clean`` command line; return the exit status.

    A failure prints one sentence and returns 1; a run stopped by SIGINT
    (Ctrl-C) or SIGTERM returns 128 + the signal number, as a shell does.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    # Without EUPS (a pip install) the middleware warns about it in every run; nothing is wrong.
    logging.getLogger("lsst.utils.packages").setLevel(max(logging.ERROR, logging.getLogger().level))
    # How each chain ends is worth a line even when only warnings are asked for.
    loop_log = logging.getLogger("radio_clean.loop")
    loop_log.setLevel(min(logging.INFO, loop_log.getEffectiveLevel()))
    # The loop reports each failed quantum itself, in the sentence that ends the run.
    if logging.getLogger().getEffectiveLevel() >= logging.WARNING:
        logging.getLogger("lsst.pipe.base.single_quantum_executor").setLevel(logging.CRITICAL)
    # The process-wide set-up that importing radio_clean leaves to its entry points.
    set_up_casa()
    # SIGTERM as Ctrl-C: the command stops where it is, cleans up and says how to go on.
    try:
        with stop_on_signals():
            if getattr(args, "wants_argv", False):
                status = args.func(args, argv)
            else:
                status = args.func(args)
    except _USER_ERRORS as err:
        print(f"radio-clean: error: {err}", file=sys.stderr)
        return _exit_status(err)
    except KeyboardInterrupt as err:
        name = str(err.args[0]) if err.args else "SIGINT"
        print(f"radio-clean: error: Stopped by {name} before {args.command} finished.", file=sys.stderr)
        return 128 + int(signal.Signals[name])
    return status or 0


def _tune_garbage_collector() -> None:
    """Spare the process's cyclic garbage collector work that finds nothing.

    The imports (the middleware, casatools' bindings) leave about 270 000
    objects that live as long as the process; frozen, they are no longer
    walked by every full collection (~0.1 s each). A run then allocates
    millions of short-lived objects: collecting them in batches of 10 000 net
    allocations rather than 700 halves the collector's remaining time. On the
    3C273 benchmark job the collections took 1.25 s before and 0.5 s after,
    at the same peak memory (also on the NGC5921 cube); part of that ran
    beside CASA's calls, and the whole process took 0.97 of its time before
    (median of 12 paired runs).
    """
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


def run() -> NoReturn:
    """The ``radio-clean`` program: `main`, then exit without tearing the interpreter down.

    Exit handlers run (scratch is removed, logs are flushed) as on any exit;
    what is skipped is the interpreter's teardown of every module and of
    CASA's C++ objects, about a second after the last line of a run that
    changes nothing the user can see.
    """
    _tune_garbage_collector()
    status = main()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    run()
