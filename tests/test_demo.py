"""Tests of radio_clean.demo: real VLA MeasurementSets made from casadata's UVFITS."""

import logging
import os

import numpy as np
import pytest

from radio_clean.casa import CasaError
from radio_clean.demo import DEMO_DATASETS, write_demo_data, write_demo_ms

# isort: split
import casatools  # set up for offline use by conftest.py


def _snapshot(path):
    """(relative path, size, mtime_ns) of every file under ``path``."""
    entries = []
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            stat = os.stat(full)
            entries.append((os.path.relpath(full, path), stat.st_size, stat.st_mtime_ns))
    return sorted(entries)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    """Write the default demo data once for the module."""
    directory = tmp_path_factory.mktemp("demo")
    paths = write_demo_data(str(directory))
    return str(directory), paths


def test_default_writes_only_3c273(demo_dir):
    """By default only 3C273XC1.ms is written, and nothing else is left behind."""
    directory, paths = demo_dir
    assert paths == [os.path.join(directory, "3C273XC1.ms")]
    # Only the finished MS: no temporary directory is left behind, NGC5921 is not made by default.
    assert sorted(os.listdir(directory)) == ["3C273XC1.ms"]


def test_3c273_contents(demo_dir):
    """The converted MS has the rows, field, window and antennas of the UVFITS."""
    (path,) = demo_dir[1]
    metadata = casatools.msmetadata()
    table = casatools.table()
    try:
        metadata.open(path)
        assert metadata.nrows() == 7669
        assert metadata.fieldnames() == ["3C273"]
        assert metadata.nspw() == 1
        freqs = metadata.chanfreqs(0)
        assert len(freqs) == 1
        assert freqs[0] == pytest.approx(8.085e9, rel=1e-9)
        # The ANTENNA table lists 28 VLA antennas; 27 of them took data (antenna "11" did not).
        assert metadata.nantennas() == 28
        with_data = set()
        for scan in metadata.scannumbers():
            with_data.update(int(a) for a in metadata.antennasforscan(scan))
        assert len(with_data) == 27
        assert "11" not in set(metadata.antennanames(sorted(with_data)))

        table.open(path)
        data = table.getcol("DATA")
        assert data.shape == (4, 1, 7669)  # RR RL LR LL, one channel
        assert np.isfinite(data).all()
        # Calibrated 3C273 at X band is tens of Jy on the parallel hands.
        flags = table.getcol("FLAG")
        rr = np.abs(data[0, 0][~flags[0, 0]])
        assert 10.0 < np.median(rr) < 100.0
    finally:
        metadata.close()
        table.close()


def test_rerun_is_a_noop(demo_dir, caplog):
    """A second run keeps the existing MS untouched and says so."""
    directory, paths = demo_dir
    before = _snapshot(paths[0])
    inode = os.stat(paths[0]).st_ino
    with caplog.at_level(logging.INFO, logger="radio_clean.demo"):
        again = write_demo_data(directory)
    assert again == paths
    assert os.stat(paths[0]).st_ino == inode
    assert _snapshot(paths[0]) == before
    assert any("already exists" in record.getMessage() for record in caplog.records)


def test_overwrite_rewrites(tmp_path):
    """overwrite=True replaces the MS with a fresh, complete one."""
    (path,) = write_demo_data(str(tmp_path))
    inode = os.stat(path).st_ino
    (again,) = write_demo_data(str(tmp_path), overwrite=True)
    assert again == path
    assert os.stat(path).st_ino != inode  # a new directory was renamed into place
    assert sorted(os.listdir(tmp_path)) == ["3C273XC1.ms"]
    metadata = casatools.msmetadata()
    try:
        metadata.open(path)
        assert metadata.nrows() == 7669
    finally:
        metadata.close()


def test_ngc5921_selectable(tmp_path):
    """NGC5921 can be asked for, into a directory that does not exist yet."""
    paths = write_demo_data(str(tmp_path / "new" / "sub"), datasets=("NGC5921",))
    assert paths == [str(tmp_path / "new" / "sub" / "NGC5921.ms")]
    metadata = casatools.msmetadata()
    try:
        metadata.open(paths[0])
        assert metadata.nspw() == 1
        freqs = metadata.chanfreqs(0)
        assert len(freqs) == 63
        assert 1.41e9 < freqs[0] < freqs[-1] < 1.42e9
        assert sorted(metadata.fieldnames()) == ["1331+30500002_0", "1445+09900002_0", "N5921_2"]
    finally:
        metadata.close()
    assert write_demo_ms("NGC5921", str(tmp_path / "new" / "sub")) == paths[0]


def test_unknown_dataset(tmp_path):
    """An unknown data set name fails before anything is written."""
    with pytest.raises(ValueError, match="NGC1234"):
        write_demo_data(str(tmp_path), datasets=("3C273XC1", "NGC1234"))
    assert os.listdir(tmp_path) == []
    assert set(DEMO_DATASETS) == {"3C273XC1", "NGC5921"}


def test_directory_not_writable(tmp_path):
    """A directory that cannot be created gives a one-sentence CasaError."""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(CasaError, match="Cannot create the demo data directory") as info:
        write_demo_data(str(blocker / "demo"))
    message = str(info.value)
    assert message.count(". ") == 0 and message.endswith(".")  # one sentence


def test_read_only_directory(tmp_path, monkeypatch):
    """A directory without write permission gives a CasaError."""
    if os.geteuid() != 0:
        tmp_path.chmod(0o500)
    else:  # root may write anywhere: pretend the permission check fails
        monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    try:
        with pytest.raises(CasaError, match="not writable"):
            write_demo_data(str(tmp_path))
    finally:
        tmp_path.chmod(0o700)


def test_existing_non_ms_is_not_replaced(tmp_path):
    """Something that is not an MS at the target path is never overwritten."""
    (tmp_path / "3C273XC1.ms").mkdir()
    with pytest.raises(CasaError, match="not a MeasurementSet"):
        write_demo_data(str(tmp_path))
    assert os.listdir(tmp_path / "3C273XC1.ms") == []
