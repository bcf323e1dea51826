"""A radio-clean image run killed part-way and run again equals one that was never killed.

The killed process gets SIGKILL (no clean-up of its own) while a cycle step is
under way; the same command with the same ``--output`` finishes the run. The
images and summaries must equal, bit for bit, those of a run that was never
interrupted, and the repository must hold no file it does not know about.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from lsst.daf.butler import Butler
from lsst.pipe.base.quantum_graph import PredictedQuantumGraphComponents

from radio_clean.cli import main
from radio_clean.ingest import DIGEST_CACHE_NAME
from radio_clean.simulate import SkyComponent, simulate_ms

# Many short cycles, so that a kill lands in the middle of the loop.
_CONTINUUM = [
    "imsize=96",
    "cell=1arcsec",
    "niter=400",
    "cyclefactor=4",
    "datacolumn=data",
    "weighting=briggs",
]
_CUBE = ["specmode=cube", "imsize=64", "cell=16arcsec", "niter=300", "cyclefactor=4", "datacolumn=data"]


def _command(ms, root, settings, jobs):
    arguments = ["image", ms, "--repo", str(root / "repo"), "--export", str(root / "out")]
    arguments += ["--output", "images/run", "--jobs", str(jobs)]
    for setting in settings:
        arguments += ["--set", setting]
    return arguments


def _kill_during_cycle(arguments, repo, cycle_run, env=None):
    """Start radio-clean in a process; SIGKILL it once ``cycle_run`` exists in the repository."""
    process = subprocess.Popen(
        [sys.executable, "-m", "radio_clean.cli", *arguments],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with Butler.from_config(repo) as butler:
                    if butler.collections.query(cycle_run):
                        break
            except Exception:
                pass  # the repository is still being made
            time.sleep(0.2)
        assert process.poll() is None, "the run ended before it could be killed: make the job longer"
    finally:
        # The whole process group: workers of --jobs N die with their parent.
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _products(root):
    """Exported FITS pixels and the summary, and every file under the repository that is not registered."""
    from astropy.io import fits

    out = root / "out"
    pixels = {}
    for path in sorted(out.rglob("*.fits")):
        with fits.open(path) as hdus:
            pixels[str(path.relative_to(out))] = hdus[0].data.copy()
    summaries = sorted(str(path.read_text()) for path in out.rglob("summary.json"))
    repo = root / "repo"
    with Butler.from_config(str(repo)) as butler:
        known = {
            butler.getURI(ref).ospath
            for ref in butler.registry.queryDatasets(..., collections=...)
            if ref.datasetType.storageClass_name != "MeasurementSet"
        }
    stray = [
        str(path)
        for path in repo.rglob("*")
        if path.is_file()
        and not path.name.startswith(("gen3.sqlite3", "butler.yaml", DIGEST_CACHE_NAME))
        and str(path) not in known
    ]
    return pixels, summaries, stray


def _assert_same(resumed, uninterrupted):
    pixels, summaries, stray = resumed
    reference_pixels, reference_summaries, _ = uninterrupted
    assert stray == [], "files the repository does not know about"
    assert sorted(pixels) == sorted(reference_pixels)
    for name, values in pixels.items():
        np.testing.assert_array_equal(values, reference_pixels[name], err_msg=name)
    assert summaries == reference_summaries


@pytest.mark.parametrize("jobs", [1, 2])
def test_killed_run_resumes_to_the_same_images(tmp_path, demo_ms_dir, monkeypatch, jobs):
    if jobs == 1:
        ms, settings, cycle_run = str(demo_ms_dir / "3C273XC1.ms"), _CONTINUUM, "images/run/cycle003"
    else:
        # A cube in two chunks, one per worker process.
        ms = simulate_ms(
            str(tmp_path / "cube.ms"),
            [SkyComponent(1.0, (0.0, 0.0), spectral_index=-0.7), SkyComponent(0.5, (-150.0, 90.0))],
            array="vla.d",
            freq_start_hz=1.4e9,
            chan_width_hz=16e6,
            n_chan=4,
            hours=0.5,
            integration_s=120.0,
            noise_jy=0.01,
            seed=11,
        ).path
        settings, cycle_run = _CUBE, "images/run/cycle002"
    uninterrupted = tmp_path / "uninterrupted"
    # The step graphs handed to --jobs workers: the '.qg' format (the old '.qgraph' takes ~100 times
    # longer to write, converted, and twice as long to read).
    written = []
    write = PredictedQuantumGraphComponents.write

    def write_and_record(components, uri, **kwargs):
        written.append(str(uri))
        return write(components, uri, **kwargs)

    monkeypatch.setattr(PredictedQuantumGraphComponents, "write", write_and_record)
    assert main(_command(ms, uninterrupted, settings, jobs)) == 0
    monkeypatch.undo()
    if jobs > 1:
        with Butler.from_config(str(uninterrupted / "repo")) as butler:
            steps = butler.collections.query("images/run/*")
        assert len(written) == len(steps) >= 3
        assert all(path.endswith(".qg") for path in written), written

    resumed = tmp_path / "resumed"
    arguments = _command(ms, resumed, settings, jobs)
    # The killed run and the one that resumes it share a temporary directory of their own.
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    _kill_during_cycle(arguments, str(resumed / "repo"), cycle_run, env)
    left = os.listdir(scratch)
    assert any(name.startswith("radio_clean-warm-") for name in left), left
    if jobs > 1:
        # multiprocessing's directory with the forkserver's socket, and radio_clean's record of it.
        (record,) = [name for name in left if name.startswith("radio_clean-multiprocessing-")]
        pymp = (scratch / record / "temp_dir").read_text()
        assert os.path.dirname(pymp) == str(scratch) and os.path.basename(pymp) in left
    completed = subprocess.run(
        [sys.executable, "-m", "radio_clean.cli", *arguments], capture_output=True, text=True, env=env
    )
    assert completed.returncode == 0, completed.stderr
    _assert_same(_products(resumed), _products(uninterrupted))
    # The run that resumed removed what the killed one left, and its own scratch at exit (the
    # forkserver removes its own a moment after the run's process has ended).
    deadline = time.monotonic() + 10
    while os.listdir(scratch) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert os.listdir(scratch) == []
