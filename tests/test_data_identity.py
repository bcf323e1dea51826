"""An MS is known by its content; what is checked before an imaging run does any work.

Every bad input is refused with one sentence, exit status 1, no traceback,
no new collection, no scratch left and the MS byte-identical.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from astropy.io import fits
from clean_utils import tree_checksums
from lsst.daf.butler import Butler

from radio_clean.cli import main
from radio_clean.ingest import INGEST_RUN
from radio_clean.parameters import CleanParametersConfig
from radio_clean.preflight import PreflightError, check_visibilities_readable
from radio_clean.resources import estimate_resources

SMALL = ["--set", "imsize=64", "--set", "cell=2arcsec", "--set", "niter=20"]
ORIGINAL_PEAK = 29.77  # restored peak of the demo MS with SMALL (Jy/beam)


def _image(ms, repo, export, *extra):
    return main(["image", *(ms if isinstance(ms, list) else [ms]), "--repo", repo, "--export", export,
                 *SMALL, *extra])  # fmt: skip


def _peak(export):
    return float(fits.getdata(os.path.join(export, "image.fits")).max())


def _modify(ms, statements):
    """Change the MS in a process of its own, as a user's calibration would (this one may hold it open)."""
    code = (
        "from radio_clean.casa import casatools\n"
        "t = casatools.table()\nt.open(%r, nomodify=False)\n%s\nt.close()\n"
    )
    subprocess.run([sys.executable, "-c", code % (ms, statements)], check=True, capture_output=True)


def _scale_data(ms, factor):
    _modify(ms, f"t.putcol('DATA', {factor} * t.getcol('DATA'))")


def _flag_everything(ms):
    _modify(ms, "t.putcol('FLAG', t.getcol('FLAG') | True)\nt.putcol('FLAG_ROW', t.getcol('FLAG_ROW') | 1)")


def _collections(repo):
    with Butler.from_config(repo) as butler:
        return sorted(butler.registry.queryCollections())


def _observations(repo):
    with Butler.from_config(repo) as butler:
        return sorted((r.name, r.ms_path) for r in butler.registry.queryDimensionRecords("observation"))


def test_ms_changed_in_place_is_imaged_as_new_observation(ms_3c273, tmp_path, caplog):
    """Recalibrated in place (DATA doubled): a new observation, and the new data's image."""
    repo = str(tmp_path / "repo")
    assert _image(ms_3c273, repo, str(tmp_path / "before")) == 0
    original = _peak(tmp_path / "before")
    assert original == pytest.approx(ORIGINAL_PEAK, rel=1e-3)
    _scale_data(ms_3c273, 2.0)
    assert _image(ms_3c273, repo, str(tmp_path / "after")) == 0
    assert _peak(tmp_path / "after") == pytest.approx(2 * original, rel=1e-5)
    (old, new) = _observations(repo)
    assert old == ("3C273XC1", ms_3c273)
    assert new[0].startswith("3C273XC1-") and new[1] == ms_3c273
    assert (
        f"{ms_3c273} has changed since it was ingested as observation 3C273XC1; its current content is "
        f"ingested as observation {new[0]}."
    ) in caplog.messages


def test_changed_copy_is_a_new_observation(ms_3c273, tmp_path, capsys):
    """A copy elsewhere with flags changed is other data, though its metadata are the same."""
    repo = str(tmp_path / "repo")
    assert main(["create-repo", repo]) == 0
    assert main(["ingest", repo, ms_3c273]) == 0
    copy = tmp_path / "night2" / "3C273XC1.ms"
    shutil.copytree(ms_3c273, copy)
    _modify(str(copy), "f = t.getcol('FLAG_ROW')\nf[::2] = True\nt.putcol('FLAG_ROW', f)")
    capsys.readouterr()
    assert main(["ingest", repo, str(copy)]) == 0
    assert capsys.readouterr().out.startswith(f"Ingested {copy} as observation 3C273XC1-")
    assert len(_observations(repo)) == 2


def test_deleted_ms_copy_at_new_path_is_read(ms_3c273, tmp_path):
    """The ingested MS was deleted; an identical copy given on the command line is what is imaged."""
    repo = str(tmp_path / "repo")
    first = tmp_path / "first" / "3C273XC1.ms"
    shutil.copytree(ms_3c273, first)
    assert main(["create-repo", repo]) == 0
    assert main(["ingest", repo, str(first)]) == 0
    shutil.rmtree(first)
    assert _image(ms_3c273, repo, str(tmp_path / "out")) == 0
    assert _peak(tmp_path / "out") == pytest.approx(ORIGINAL_PEAK, rel=1e-3)
    # Still one observation: the same data, read from where it is now.
    assert _observations(repo) == [("3C273XC1", str(first))]


def test_missing_visibilities_are_named(ms_3c273, tmp_path):
    repo = str(tmp_path / "repo")
    assert main(["create-repo", repo]) == 0
    assert main(["ingest", repo, ms_3c273]) == 0
    shutil.rmtree(ms_3c273)
    with Butler.from_config(repo) as butler:
        (record,) = butler.registry.queryDimensionRecords("observation")
        with pytest.raises(PreflightError) as caught:
            check_visibilities_readable(butler, [INGEST_RUN], [record.id])
    assert str(caught.value) == (
        f"The MeasurementSet {ms_3c273} of observation 3C273XC1 no longer exists (moved or deleted since it "
        "was ingested); give its new path on the command line, or put it back."
    )


def _bad_image_cases(ms):
    no_data = (
        f"Field 3C273 has no unflagged data{{}} in {ms} (every selected visibility is flagged, or the "
        "selection matches none); change the selection or unflag the data."
    )
    big = (
        r"(The images \(100000x100000 pixels, 1 channel, 1 Stokes plane\) need at least [0-9.]+ GB of "
        r"memory but [0-9.]+ GB are available; choose a smaller imsize, or give --no-resource-check to try "
        r"anyway\.|.*: the file system has [0-9.]+ \w+ free, less than the [0-9.]+ \w+ this run needs at "
        r"least \(images of 100000x100000 pixels, 1 channel, 1 Stokes plane\); free some space there, "
        r"choose another place or a smaller imsize, or give --no-resource-check to try anyway\.)"
    )
    return {
        "all_flagged": ([], re.escape(no_data.format(""))),
        "empty_timerange": (
            ["--set", "timerange=2001/01/01/00:00:00~2001/01/02/00:00:00"],
            re.escape(no_data.format(" with timerange=2001/01/01/00:00:00~2001/01/02/00:00:00")),
        ),
        "no_such_field": (
            ["--set", "field=NGC1068"],
            re.escape(
                f"field=NGC1068: no such field in {ms} (fields: 3C273); give field= one of those, "
                "or leave it out to image all."
            ),
        ),
        "too_big": (["--set", "imsize=100000", "--set", "cell=0.01arcsec"], big),
    }


@pytest.mark.parametrize("case", ["all_flagged", "empty_timerange", "no_such_field", "too_big"])
@pytest.mark.parametrize("repo_exists", [True, False])
def test_refused_before_work(ms_3c273, tmp_path, capsys, monkeypatch, case, repo_exists):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    repo = str(tmp_path / "repo")
    if repo_exists:
        assert main(["create-repo", repo]) == 0
        collections = _collections(repo)
    if case == "all_flagged":
        _flag_everything(ms_3c273)
    arguments, expected = _bad_image_cases(ms_3c273)[case]
    before = tree_checksums(ms_3c273)
    capsys.readouterr()
    assert _image(ms_3c273, repo, str(tmp_path / "out"), *arguments) == 1
    err = capsys.readouterr().err
    assert re.fullmatch(f"radio-clean: error: {expected}\n", err), err
    assert "Traceback" not in err
    assert tree_checksums(ms_3c273) == before
    assert not os.path.exists(tmp_path / "out")
    if repo_exists:
        assert _collections(repo) == collections
    else:
        assert not os.path.exists(repo)
    assert os.listdir(scratch) == []


def test_no_resource_check_skips_the_estimate(ms_3c273, tmp_path, capsys):
    """The override lets a refused size through to the next check (here: a field with no data)."""
    arguments = ["--set", "imsize=100000", "--set", "cell=0.01arcsec", "--set", "field=NGC1068"]
    assert _image(ms_3c273, str(tmp_path / "repo"), str(tmp_path / "out"), *arguments) == 1
    assert "need at least" in capsys.readouterr().err
    assert _image(ms_3c273, str(tmp_path / "repo"), str(tmp_path / "out"), *arguments,
                  "--no-resource-check") == 1  # fmt: skip
    assert capsys.readouterr().err.startswith("radio-clean: error: field=NGC1068: no such field in")


def test_resource_estimate():
    parameters = CleanParametersConfig()
    parameters.imsize = [1000]
    estimate = estimate_resources(parameters, 1)
    pixels = 1000 * 1000
    # hogbom: padded complex grid and its FFT copy; residual, model, PSF, mask, PB in the minor cycle.
    assert estimate.memory == pytest.approx(2 * 8 * 1.2**2 * pixels + 5 * 4 * pixels)
    assert estimate.scratch == 10 * 4 * pixels
    assert estimate.shape == "1000x1000 pixels, 1 channel, 1 Stokes plane"
    parameters.deconvolver = "mtmfs"
    parameters.nterms = 2
    parameters.stokes = "IQUV"
    mtmfs = estimate_resources(parameters, 8, n_chains=4, jobs=2)
    assert mtmfs.scratch == (2 * 3 + 5 * 2 + 3) * 4 * pixels * 4 * 8
    # Two chunks of two channels side by side.
    assert mtmfs.memory == pytest.approx(2 * (2 * 3 * 8 * 1.2**2 + (4 + 3 + 2) * 4) * pixels * 4 * 2)


def test_sigterm_leaves_no_scratch(ms_3c273, tmp_path):
    """A run stopped with SIGTERM removes its scratch on the way out."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    environment = {**os.environ, "TMPDIR": str(scratch)}
    command = [sys.executable, "-m", "radio_clean.cli", "image", ms_3c273, "--repo", str(tmp_path / "repo"),
               "--export", str(tmp_path / "out"), "--set", "imsize=128", "--set", "cell=1arcsec",
               "--set", "niter=100000", "--set", "cycleniter=5", "--set", "threshold=0Jy"]  # fmt: skip
    process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not any(name.startswith("radio_clean-warm-") for name in os.listdir(scratch)):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.2)
    time.sleep(1.0)  # well inside the major/minor cycles
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert os.listdir(scratch) == []
