"""Every failure of radio-clean is one sentence, leaves nothing half-written and never touches the MS.

Refusals before any work run through `radio_clean.cli.main` in this process
(the same front door, without a second interpreter start for each); stops,
kills, full disks, repositories gone read-only and concurrent runs run
``python -m radio_clean.cli`` in a process of its own. Each test checks the
exit status, the exact sentence, that stderr has no traceback, which
collections the repository holds afterwards, and that the MS is byte for
byte what it was.

Some faults need root (a read-only directory root can still write to is
made immutable with ``chattr +i``; a full disk is a small tmpfs); those tests
are skipped where they cannot be set up.
"""

import contextlib
import glob
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from lsst.daf.butler import Butler, CollectionType

from radio_clean._stop import raise_if_stop_requested, stop_on_signals, stop_requested
from radio_clean.cli import main

_SMALL = ["--set", "imsize=64", "--set", "cell=1arcsec", "--set", "niter=20"]
# Many short cycles, so that a signal lands in the middle of the loop.
_LONG = [
    *("--set", "imsize=64", "--set", "cell=1arcsec", "--set", "niter=40", "--set", "cycleniter=10"),
    *("--set", "cyclefactor=4", "--set", "datacolumn=data", "--set", "weighting=briggs"),
]
_LONG_ITERATIONS = 40
_IS_ROOT = os.geteuid() == 0


# --- helpers -------------------------------------------------------------------------------------------


def _tree_hash(path) -> dict[str, str]:
    """SHA-256 of every file under ``path``, by relative path."""
    hashes = {}
    for file in sorted(Path(path).rglob("*")):
        if file.is_file():
            hashes[str(file.relative_to(path))] = hashlib.sha256(file.read_bytes()).hexdigest()
    return hashes


def _collections(repo) -> dict[str, tuple[str, ...]]:
    """Each collection of the repository and its children (empty if there is no repository)."""
    if not os.path.exists(os.path.join(repo, "butler.yaml")):
        return {}
    with Butler.from_config(str(repo)) as butler:
        infos = butler.collections.query_info("*", include_chains=True)
        return {info.name: tuple(info.children) for info in infos}


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("radio-clean: error:")]


def _assert_one_sentence(status, stderr, expected_status, sentence):
    assert "Traceback" not in stderr
    assert _error_lines(stderr) == [f"radio-clean: error: {sentence}"]
    assert stderr.rstrip().endswith(sentence)
    assert status == expected_status


def _cli(argv, capsys):
    """Run ``radio-clean ARGV`` in this process; return exit status and stderr."""
    capsys.readouterr()
    status = main([str(arg) for arg in argv])
    return status, capsys.readouterr().err


def _start(argv, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "radio_clean.cli", *map(str, argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **kwargs,
    )


def _wait_for(pattern, process, timeout=240):
    deadline = time.monotonic() + timeout
    while not glob.glob(str(pattern)) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before the fault could be made: make the job longer"


def _resume_command(sentence):
    """The command between backticks in a failure sentence, as arguments of `main`."""
    words = shlex.split(sentence.split("`")[1])
    assert words[0] == "radio-clean"
    return words[1:]


def _exported_summary(export):
    return json.loads((Path(export) / "summary.json").read_text())


@contextlib.contextmanager
def _read_only(path):
    """Make the directory tree ``path`` unwritable (even for root); yield the reason writes then fail."""
    if _IS_ROOT:
        if shutil.which("chattr") is None:
            pytest.skip("running as root without chattr: cannot make a directory read-only")
        result = subprocess.run(["chattr", "-R", "+i", str(path)], capture_output=True)
        if result.returncode:
            pytest.skip(f"chattr +i does not work here: {result.stderr.decode().strip()}")
        try:
            yield "Operation not permitted"
        finally:
            subprocess.run(["chattr", "-R", "-i", str(path)], check=True)
    else:
        modes = {p: p.stat().st_mode for p in [Path(path), *Path(path).rglob("*")] if p.is_dir()}
        for directory in modes:
            directory.chmod(0o555)
        try:
            yield "Permission denied"
        finally:
            for directory, mode in modes.items():
                directory.chmod(mode)


@contextlib.contextmanager
def _tmpfs(path, size):
    """Mount a tmpfs of ``size`` (e.g. ``4m``) at ``path``: a small file system to fill."""
    path.mkdir(parents=True, exist_ok=True)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]
    if not _IS_ROOT or subprocess.run(mount).returncode:
        pytest.skip("needs root and tmpfs to make a small file system")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


@pytest.fixture
def ms(ms_3c273):
    """A private copy of the demo MS, and its hash, checked unchanged after the test."""
    before = _tree_hash(ms_3c273)
    yield ms_3c273
    assert _tree_hash(ms_3c273) == before, "the MeasurementSet was modified"


@pytest.fixture(scope="module")
def finished_repo(tmp_path_factory, demo_ms_dir):
    """A repository with one finished run in collection ``images/done`` (imsize 64, niter 20)."""
    root = tmp_path_factory.mktemp("finished")
    ms_path = demo_ms_dir / "3C273XC1.ms"
    argv = ["image", ms_path, "--repo", root / "repo", "--export", root / "out", "--output", "images/done"]
    assert main([str(a) for a in argv + _SMALL]) == 0
    return root / "repo"


@pytest.fixture
def repo_copy(finished_repo, tmp_path):
    """A private copy of `finished_repo`."""
    path = tmp_path / "repo"
    shutil.copytree(finished_repo, path)
    return path


# --- refused before any work ---------------------------------------------------------------------------


def test_create_repo_on_a_file(tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("not a repository")
    status, err = _cli(["create-repo", target], capsys)
    _assert_one_sentence(
        status, err, 1, f"{target} is a file, not a directory; give a directory for the repository."
    )
    assert target.read_text() == "not a repository"


def test_create_repo_in_read_only_directory(tmp_path, capsys):
    parent = tmp_path / "locked"
    parent.mkdir()
    with _read_only(parent) as reason:
        status, err = _cli(["create-repo", parent / "repo"], capsys)
    _assert_one_sentence(
        status,
        err,
        1,
        f"Cannot create a repository in {parent / 'repo'} ({reason}); give a directory you can write to.",
    )
    assert list(parent.iterdir()) == []


def test_create_repo_twice_at_once(tmp_path):
    # Two processes race to create one repository: it is made once, the other says it exists.
    repo = tmp_path / "repo"
    processes = [_start(["create-repo", repo]) for _ in range(2)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in processes]
    assert sorted(status for status, _, _ in results) == [0, 1]
    for status, out, err in results:
        assert "Traceback" not in err
        if status == 0:
            assert out.strip() == f"Created radio_clean repository {repo}."
        else:
            _assert_one_sentence(
                status, err, 1, f"{repo} already holds a Butler repository; choose a new directory."
            )
    assert sorted(os.listdir(repo)) == ["butler.yaml", "gen3.sqlite3"]
    assert _collections(repo) == {}


def _image_argv(ms, repo, export, *extra):
    return ["image", ms, "--repo", repo, "--export", export, *_SMALL, *extra]


@pytest.mark.parametrize("which", ["--repo", "--export"])
def test_image_path_is_a_file(tmp_path, ms, capsys, which):
    target = tmp_path / "taken"
    target.write_text("x")
    repo = target if which == "--repo" else tmp_path / "repo"
    export = target if which == "--export" else tmp_path / "out"
    purpose = "the repository" if which == "--repo" else "the FITS files"
    status, err = _cli(_image_argv(ms, repo, export), capsys)
    _assert_one_sentence(
        status, err, 1, f"{which} {target} is a file, not a directory; give a directory for {purpose}."
    )
    assert sorted(os.listdir(tmp_path)) == ["3C273XC1.ms", "taken"]


def test_image_export_under_a_file(tmp_path, ms, capsys):
    target = tmp_path / "taken"
    target.write_text("x")
    export = target / "out"
    status, err = _cli(_image_argv(ms, tmp_path / "repo", export), capsys)
    _assert_one_sentence(
        status,
        err,
        1,
        f"--export {export} (its parent {target} is a file) is a file, not a directory; "
        "give a directory for the FITS files.",
    )
    assert sorted(os.listdir(tmp_path)) == ["3C273XC1.ms", "taken"]


@pytest.mark.parametrize("which", ["--repo", "--export"])
def test_image_in_read_only_directory(tmp_path, ms, capsys, which):
    locked = tmp_path / "locked"
    locked.mkdir()
    repo = locked / "repo" if which == "--repo" else tmp_path / "repo"
    export = locked / "out" if which == "--export" else tmp_path / "out"
    target = repo if which == "--repo" else export
    purpose = "the repository" if which == "--repo" else "the FITS files"
    with _read_only(locked) as reason:
        status, err = _cli(_image_argv(ms, repo, export), capsys)
    _assert_one_sentence(
        status,
        err,
        1,
        f"{which} {target}: cannot write in {locked} (to make {target} in): {reason}; "
        f"give a directory you can write to for {purpose}.",
    )
    assert sorted(os.listdir(tmp_path)) == ["3C273XC1.ms", "locked"]
    assert list(locked.iterdir()) == []


def test_image_into_read_only_repo(repo_copy, tmp_path, ms, capsys):
    before = _collections(repo_copy)
    with _read_only(repo_copy) as reason:
        status, err = _cli(_image_argv(ms, repo_copy, tmp_path / "out"), capsys)
    _assert_one_sentence(
        status,
        err,
        1,
        f"--repo {repo_copy}: cannot write in {repo_copy}: {reason}; "
        "give a directory you can write to for the repository.",
    )
    assert _collections(repo_copy) == before
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "option, value",
    [("--jobs", 0), ("--jobs", -2), ("--chunk-channels", 0), ("--chunk-channels", -4)],
)
def test_image_count_out_of_range(tmp_path, ms, capsys, option, value):
    status, err = _cli(_image_argv(ms, tmp_path / "repo", tmp_path / "out", option, value), capsys)
    _assert_one_sentence(status, err, 1, f"{option} must be a whole number of 1 or more, not {value}.")
    assert sorted(os.listdir(tmp_path)) == ["3C273XC1.ms"]


def test_clean_jobs_out_of_range(repo_copy, capsys):
    before = _collections(repo_copy)
    argv = ["clean", repo_copy, "-p", "ContinuumImaging.yaml", "-o", "images/new", "-j", "0"]
    status, err = _cli(argv, capsys)
    _assert_one_sentence(status, err, 1, "--jobs must be a whole number of 1 or more, not 0.")
    assert _collections(repo_copy) == before


def test_image_unknown_field(tmp_path, ms, capsys):
    status, err = _cli(_image_argv(ms, tmp_path / "repo", tmp_path / "out", "--set", "field=NGC0001"), capsys)
    _assert_one_sentence(
        status,
        err,
        1,
        f"field=NGC0001: no such field in {ms} (fields: 3C273); give field= one of those, "
        "or leave it out to image all.",
    )
    assert sorted(os.listdir(tmp_path)) == ["3C273XC1.ms"]


@pytest.mark.parametrize(
    "output, kind",
    [("raw/visibilities", "RUN"), ("images/done/start", "RUN"), ("shared/chain", "CHAINED")],
)
def test_image_output_not_made_by_radio_clean(repo_copy, tmp_path, ms, capsys, output, kind):
    if output == "shared/chain":
        with Butler.from_config(str(repo_copy), writeable=True) as butler:
            butler.collections.register(output, CollectionType.CHAINED)
            butler.collections.redefine_chain(output, ["images/done/start", "raw/visibilities"])
    before = _collections(repo_copy)
    status, err = _cli(_image_argv(ms, repo_copy, tmp_path / "out", "--output", output), capsys)
    _assert_one_sentence(
        status,
        err,
        1,
        f"--output {output} names an existing {kind} collection that radio-clean image did not make; "
        "give a new name, or the output collection of an earlier radio-clean image run to resume it.",
    )
    assert _collections(repo_copy) == before
    assert not (tmp_path / "out").exists()


def test_image_output_made_with_other_parameters(repo_copy, tmp_path, ms, capsys):
    before = _collections(repo_copy)
    argv = _image_argv(ms, repo_copy, tmp_path / "out", "--output", "images/done", "--set", "niter=30")
    status, err = _cli(argv, capsys)
    _assert_one_sentence(
        status,
        err,
        1,
        "Output collection images/done was started with other settings of makePsf than these; give a new "
        "output collection, or the same settings to resume it.",
    )
    # The MS (a copy at another path) was ingested, as any image run does (its path's own RUN under
    # raw/visibilities); no other collection was made or changed.
    assert {name: children for name, children in _collections(repo_copy).items() if name in before} == before
    assert {name for name in _collections(repo_copy) if not name.startswith("raw/visibilities/")} == set(
        before
    )
    assert not (tmp_path / "out").exists()


def test_image_truncated_data_file(tmp_path, ms_3c273, capsys):
    ms = ms_3c273  # damaged here on purpose; checked unchanged by the run below
    data_file = Path(ms) / "table.f2_TSM1"  # the DATA column's tiled storage (see the MS's table.dat)
    data_file.write_bytes(data_file.read_bytes()[:300_000])
    before = _tree_hash(ms)
    status, err = _cli(_image_argv(ms, tmp_path / "repo", tmp_path / "out"), capsys)
    _assert_one_sentence(
        status,
        err,
        1,
        f"MeasurementSet {ms} cannot be read (column DATA): BucketCache::getBucket: bucket 0 exceeds nr of "
        "buckets; its table files are damaged or cut short, so image an intact copy.",
    )
    assert _tree_hash(ms) == before
    assert sorted(os.listdir(tmp_path)) == ["3C273XC1.ms"]


def _mib(n_bytes):
    return f"{n_bytes / 2**20:.1f} MiB"


def _short_of_space(where, free, needed, shape):
    return (
        f"{where}: the file system has {_mib(free)} free, less than the {_mib(needed)} this run needs at "
        f"least (images of {shape}); free some space there, choose another place or a smaller imsize, or "
        "give --no-resource-check to try anyway."
    )


def test_image_repo_without_free_space(tmp_path, ms, capsys):
    with _tmpfs(tmp_path / "small", "4m") as small:
        free = shutil.disk_usage(small).free
        status, err = _cli(_image_argv(ms, small / "repo", tmp_path / "out"), capsys)
        assert list(small.iterdir()) == []
    # Registry margin + PSF, PB, sumwt, two cycles of residual, mask and model, image, pbcor: 11 planes.
    needed = 16 * 2**20 + 11 * 64 * 64 * 4
    _assert_one_sentence(
        status,
        err,
        1,
        _short_of_space(f"--repo {small / 'repo'}", free, needed, "64x64 pixels, 1 channel, 1 Stokes plane"),
    )
    assert not (tmp_path / "out").exists()


def test_image_export_without_free_space(tmp_path, ms, capsys):
    with _tmpfs(tmp_path / "small", "4m") as small:
        free = shutil.disk_usage(small).free
        argv = _image_argv(ms, tmp_path / "repo", small / "out", "--set", "imsize=2048")
        status, err = _cli(argv, capsys)
        assert list(small.iterdir()) == []
    # Seven images of 2048 x 2048 (image, residual, model, psf, pb, mask, sumwt).
    _assert_one_sentence(
        status,
        err,
        1,
        _short_of_space(
            f"--export {small / 'out'}",
            free,
            7 * 2048 * 2048 * 4,
            "2048x2048 pixels, 1 channel, 1 Stokes plane",
        ),
    )
    assert not (tmp_path / "repo").exists()


# --- stopped, killed or failing part-way ---------------------------------------------------------------


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_stopped_mid_run_says_how_to_resume(tmp_path, ms, signal_name):
    repo, export = tmp_path / "repo", tmp_path / "out"
    argv = ["image", ms, "--repo", repo, "--export", export, *_LONG]
    process = _start(argv)
    _wait_for(repo / "images" / "*" / "cycle002", process)
    os.kill(process.pid, getattr(signal, signal_name))
    _, err = process.communicate(timeout=120)
    (output,) = [name for name in _collections(repo) if name.startswith("images/") and name.count("/") == 1]
    resume = shlex.join(["radio-clean", *map(str, argv), "--output", output])
    _assert_one_sentence(
        process.returncode,
        err,
        128 + getattr(signal, signal_name),
        f"Stopped by {signal_name}; the steps finished so far are kept in collection {output} of {repo}; "
        f"to go on, run `{resume}`.",
    )
    children = _collections(repo)[output]
    assert f"{output}/start" in children and not any("finish" in child for child in children)
    if signal_name == "SIGINT":
        # The command in the sentence finishes the run.
        assert main(_resume_command(err.strip().splitlines()[-1])) == 0
        summary = _exported_summary(export)
        assert (summary["iterdone"], summary["stopcode"]) == (_LONG_ITERATIONS, 1)


def test_stopped_before_any_step_finished_leaves_nothing(tmp_path, ms):
    repo, export = tmp_path / "repo", tmp_path / "out"
    process = _start(["image", ms, "--repo", repo, "--export", export, *_LONG])
    # Files of the start step's first quantum: the step is under way, nothing is registered yet.
    _wait_for(repo / "images" / "*" / "start", process)
    os.kill(process.pid, signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    _assert_one_sentence(
        process.returncode, err, 128 + signal.SIGTERM, "Stopped by SIGTERM; nothing was kept: run the same "
        "command again to start over."
    )  # fmt: skip
    assert _collections(repo) == {"raw/visibilities": ()}
    assert not (repo / "images").exists()
    assert not export.exists()


def test_sigkill_leaves_no_worker_running(tmp_path, ms):
    repo = tmp_path / "repo"
    process = _start(["image", ms, "--repo", repo, "--export", tmp_path / "out", "--jobs", "2", *_LONG])
    _wait_for(repo / "images" / "*" / "cycle002", process)

    def group():  # processes of the run's session that are not zombies
        alive = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            with contextlib.suppress(OSError):
                state, _, pgid = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[:3]
                if int(pgid) == process.pid and state != "Z":
                    alive.append(int(pid))
        return alive

    assert len(group()) >= 3  # the loop, the forkserver, the workers
    os.kill(process.pid, signal.SIGKILL)  # the loop's process only, as the OOM killer would
    process.wait()
    deadline = time.monotonic() + 10
    while group() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert group() == []
    # Nothing writes in the repository any more.
    files = sorted(str(p) for p in repo.rglob("*"))
    time.sleep(1.5)
    assert sorted(str(p) for p in repo.rglob("*")) == files


def _fault_mid_run(tmp_path, ms, repo, make_fault, output="images/run"):
    export = tmp_path / "out"
    argv = ["image", ms, "--repo", repo, "--export", export, *_LONG, "--output", output]
    process = _start(argv)
    _wait_for(repo / "images" / "run" / "cycle002", process)
    with make_fault():
        _, err = process.communicate(timeout=120)
    return process.returncode, err, argv


def test_disk_full_mid_run(tmp_path, ms):
    with _tmpfs(tmp_path / "disk", "32m") as disk:
        repo = disk / "repo"
        filler = disk / "filler"

        @contextlib.contextmanager
        def fill_disk():
            with open(filler, "wb") as stream, contextlib.suppress(OSError):
                while True:
                    stream.write(bytes(2**20))
                    stream.flush()
            yield

        status, err, argv = _fault_mid_run(tmp_path, ms, repo, fill_disk)
        last = err.strip().splitlines()[-1]
        assert last.startswith("radio-clean: error: ")
        assert "No space left on device" in last or "database or disk is full" in last
        resume = shlex.join(["radio-clean", *map(str, argv)])
        assert last.endswith(
            f"; the steps finished so far are kept in collection images/run of {repo}; to go on, run "
            f"`{resume}`."
        )
        _assert_one_sentence(status, err, 1, last.removeprefix("radio-clean: error: "))
        assert "finish" not in " ".join(_collections(repo)["images/run"])
        filler.unlink()
        assert main(_resume_command(last)) == 0
        assert _exported_summary(tmp_path / "out")["iterdone"] == _LONG_ITERATIONS


def test_repo_read_only_mid_run(tmp_path, ms):
    repo = tmp_path / "repo"
    status, err, argv = _fault_mid_run(tmp_path, ms, repo, lambda: _read_only(repo))
    last = err.strip().splitlines()[-1]
    resume = shlex.join(["radio-clean", *map(str, argv)])
    reason = "Operation not permitted" if _IS_ROOT else "Permission denied"
    assert reason in last or "unable to open database file" in last or "readonly database" in last
    assert last.endswith(
        f"; the steps finished so far are kept in collection images/run of {repo}; to go on, run `{resume}`."
    )
    _assert_one_sentence(status, err, 1, last.removeprefix("radio-clean: error: "))
    assert "finish" not in " ".join(_collections(repo)["images/run"])
    # Resuming after a write failure is shown by test_disk_full_mid_run.


def test_export_directory_read_only_at_the_end(tmp_path, ms):
    repo, export = tmp_path / "repo", tmp_path / "out"
    argv = ["image", ms, "--repo", repo, "--export", export, *_LONG, "--output", "images/run"]
    process = _start(argv)
    _wait_for(repo / "images" / "run" / "cycle002", process)
    with _read_only(export) as reason:
        _, err = process.communicate(timeout=120)
    resume = shlex.join(["radio-clean", *map(str, argv)])
    _assert_one_sentence(
        process.returncode,
        err,
        1,
        f"Writing to {export} failed ({reason}); the images are in collection images/run of {repo}; after "
        f"fixing that, export them: `{resume}`.",
    )
    assert any("finish" in child for child in _collections(repo)["images/run"])
    assert main(_resume_command(err.strip().splitlines()[-1])) == 0
    assert _exported_summary(export)["iterdone"] == _LONG_ITERATIONS


# --- concurrency ---------------------------------------------------------------------------------------


def test_two_runs_at_once_on_one_new_repo(tmp_path, ms):
    assert_two_runs_at_once(tmp_path, ms, tmp_path / "repo")


def assert_two_runs_at_once(tmp_path, ms, repo):
    """Two ``radio-clean image`` processes of one MS into ``repo`` at once: two outputs, the same image.

    Also run on a PostgreSQL registry by tests/test_postgres.py.
    """
    processes = [_start(_image_argv(ms, repo, tmp_path / f"out{i}")) for i in range(2)]
    results = [p.communicate(timeout=300) for p in processes]
    for process, (out, err) in zip(processes, results):
        assert "Traceback" not in err
        assert process.returncode == 0, err
    outputs = sorted(out.strip().splitlines()[-1].split("collection ")[1].split(";")[0] for out, _ in results)
    assert len(set(outputs)) == 2
    collections = _collections(repo)
    for output in outputs:
        assert [child.rsplit("/", 1)[-1] for child in collections[output]] == [
            "finish003", "cycle002", "cycle001", "start", "visibilities",
        ]  # fmt: skip
    # Same data, same parameters: the same image, whichever run finished first.
    from astropy.io import fits

    pixels = [fits.getdata(tmp_path / f"out{i}" / "image.fits") for i in range(2)]
    assert (pixels[0] == pixels[1]).all() and pixels[0].max() > 1.0
    with Butler.from_config(str(repo)) as butler:
        for output in outputs:
            data_id = dict(instrument="VLA", field="3C273", band="8085MHz-1ch")
            image = butler.get("image", data_id, collections=output)
            assert (image.pixels.squeeze() == pixels[0].squeeze()).all()


# --- radio-clean export and --version ------------------------------------------------------------------


def test_export_of_a_finished_run_equals_the_run_s_own(finished_repo, tmp_path, capsys):
    status, _ = _cli(["export", finished_repo, tmp_path / "again", "--collection", "images/done"], capsys)
    assert status == 0
    first = finished_repo.parent / "out"
    names = sorted(os.listdir(first))
    assert sorted(os.listdir(tmp_path / "again")) == [name for name in names if name != "pipeline.yaml"]
    for name in names:
        if name.endswith(".fits"):
            np.testing.assert_array_equal(
                fits.getdata(tmp_path / "again" / name), fits.getdata(first / name), err_msg=name
            )
    summary = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert summary == json.loads((first / "summary.json").read_text())


@pytest.mark.parametrize(
    "collection, sentence",
    [
        ("images/none", "There is no collection images/none in this repository."),
        (
            "raw/visibilities",
            "Collection raw/visibilities holds no restored images (no restore task ran in it); give the "
            "output collection of a finished run (radio-clean image, radio-clean clean, pipetask or bps).",
        ),
    ],
)
def test_export_of_what_is_not_a_finished_run(finished_repo, tmp_path, capsys, collection, sentence):
    status, err = _cli(["export", finished_repo, tmp_path / "x", "--collection", collection], capsys)
    _assert_one_sentence(status, err, 1, sentence)
    assert not (tmp_path / "x").exists()


def test_version(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    assert re.fullmatch(
        r"radio-clean \d+\.\d+\.\d+ \(casatools [\d.]+, lsst-pipe-base [\w.]+\)\n", capsys.readouterr().out
    )


# The KeyboardInterrupt dropped in the finalizer is what this test makes happen.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_stop_whose_interrupt_a_finalizer_swallowed_is_still_a_stop():
    """Python drops an exception raised in a finalizer (``__del__``), KeyboardInterrupt included.

    The signal may arrive while a finalizer runs (a CASA tool's, collected anywhere): the run must
    still stop, so the stop is remembered and the loop checks it between quanta and steps.
    """

    class Finalized:
        def __del__(self):
            signal.raise_signal(signal.SIGINT)
            for _ in range(1000):  # the handler runs here, inside the finalizer
                pass

    handler_before = signal.getsignal(signal.SIGINT)
    with stop_on_signals():
        Finalized()
        assert stop_requested() == "SIGINT"
        with pytest.raises(KeyboardInterrupt, match="SIGINT"):
            raise_if_stop_requested()
    assert signal.getsignal(signal.SIGINT) is handler_before
