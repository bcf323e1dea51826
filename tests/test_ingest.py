"""Tests of `radio-clean create-repo` and `radio-clean ingest` on real VLA data."""

import os
import shutil
import subprocess
import sys

import casatools
import pytest
from clean_utils import registry_snapshot, tree_checksums
from lsst.daf.butler import Butler

from radio_clean.cli import main
from radio_clean.ingest import INGEST_RUN, ingest_measurement_sets
from radio_clean.repo import create_repo

# 3C273 in the MS is at B1950 12h26m33.248s +02d19m43.29s; J2000 from NED: 12h29m06.70s +02d03m08.6s.
RA_3C273_J2000 = 187.277916
DEC_3C273_J2000 = 2.052389


@pytest.fixture
def repo(tmp_path):
    path = str(tmp_path / "repo")
    assert main(["create-repo", path]) == 0
    return path


def _copy_rows(ms_path, new_path, taql_condition):
    """Write a new MS holding the rows of ``ms_path`` that satisfy ``taql_condition``."""
    table = casatools.table()
    table.open(ms_path)
    subset = table.query(taql_condition)
    subset.copy(str(new_path), deep=True).close()
    subset.close()
    table.close()


def test_ingest_records_metadata(repo, ms_3c273, capsys):
    before = tree_checksums(ms_3c273)
    assert main(["ingest", repo, ms_3c273]) == 0
    assert "Ingested" in capsys.readouterr().out
    assert tree_checksums(ms_3c273) == before

    with Butler.from_config(repo, collections=INGEST_RUN) as butler:
        (field,) = butler.registry.queryDimensionRecords("field")
        assert field.name == "3C273"
        assert field.ra == pytest.approx(RA_3C273_J2000, abs=2e-4)
        assert field.dec == pytest.approx(DEC_3C273_J2000, abs=2e-4)
        (band,) = butler.registry.queryDimensionRecords("band")
        assert band.name == "8085MHz-1ch"
        assert (band.freq_min, band.n_chan, band.chan_width) == (8.085e9, 1, 5e7)
        (observation,) = butler.registry.queryDimensionRecords("observation")
        assert observation.instrument == "VLA"
        assert observation.name == "3C273XC1"
        assert observation.n_rows == 7669
        assert observation.ms_path == ms_3c273
        assert observation.timespan.begin.utc.isot.startswith("1989-06-27T01:02")
        assert 3.6 < (observation.timespan.end - observation.timespan.begin).to_value("h") < 3.8
        (ref,) = butler.query_datasets("visibilities")
        assert ref.dataId["observation"] == observation.id
        assert butler.getURI(ref).ospath == ms_3c273
        assert butler.get(ref).path == ms_3c273
        # The join element gives the field and band quantum exactly this observation.
        data_ids = list(butler.registry.queryDataIds(["observation", "field", "band"]))
        assert [(d["observation"], d["field"], d["band"]) for d in data_ids] == [
            (observation.id, "3C273", "8085MHz-1ch")
        ]


def test_reingest_is_a_noop(repo, ms_3c273, tmp_path, capsys):
    assert main(["ingest", repo, ms_3c273]) == 0
    snapshot = registry_snapshot(repo)
    capsys.readouterr()
    assert main(["ingest", repo, ms_3c273]) == 0
    assert "already ingested as observation 3C273XC1" in capsys.readouterr().out
    # A copy of the same data elsewhere is the same observation, not a second one.
    copy = tmp_path / "elsewhere" / "3C273XC1.ms"
    shutil.copytree(ms_3c273, copy)
    assert main(["ingest", repo, str(copy)]) == 0
    assert f"{copy} is already ingested as observation 3C273XC1" in capsys.readouterr().out
    assert registry_snapshot(repo) == snapshot


def test_different_ms_with_same_name_do_not_collide(repo, ms_3c273, tmp_path):
    other = tmp_path / "night2" / "3C273XC1.ms"
    other.parent.mkdir()
    _copy_rows(ms_3c273, other, "ROWNUMBER() % 2 == 0")
    with Butler.from_config(repo, writeable=True) as butler:
        outcomes = ingest_measurement_sets(butler, [ms_3c273, str(other)])
        assert [o.ingested for o in outcomes] == [True, True]
        names = sorted(r.name for r in butler.registry.queryDimensionRecords("observation"))
        assert len(set(names)) == 2 and names[0] == "3C273XC1" and names[1].startswith("3C273XC1-")
        refs = butler.query_datasets("visibilities", collections=INGEST_RUN)
        assert sorted(butler.getURI(ref).ospath for ref in refs) == sorted([ms_3c273, str(other)])
        # Same target and set-up: one field, one band, joined to both observations.
        assert len(list(butler.registry.queryDimensionRecords("field"))) == 1
        assert len(list(butler.registry.queryDataIds(["observation", "field", "band"]))) == 2


@pytest.mark.parametrize("transfer", ["symlink", "copy"])
def test_transfer_modes(repo, ms_3c273, transfer):
    before = tree_checksums(ms_3c273)
    assert main(["ingest", repo, ms_3c273, "--transfer", transfer]) == 0
    with Butler.from_config(repo, collections=INGEST_RUN) as butler:
        (ref,) = butler.query_datasets("visibilities")
        stored = butler.get(ref).path
    assert stored.startswith(os.path.realpath(repo)) or stored.startswith(repo)
    assert os.path.islink(stored) == (transfer == "symlink")
    assert tree_checksums(stored) == before
    assert tree_checksums(ms_3c273) == before
    # The copy leaves no staging directory behind.
    assert not [name for name in os.listdir(repo) if name.startswith(".ingest-")]
    table = casatools.table()
    table.open(stored)
    assert table.nrows() == 7669
    table.close()


def _bad_inputs(tmp_path, ms_3c273):
    not_ms = tmp_path / "not_an_ms"
    (not_ms / "sub").mkdir(parents=True)
    (not_ms / "notes.txt").write_text("hello")
    a_file = tmp_path / "visibilities.uvfits"
    a_file.write_bytes(b"SIMPLE  =                    T")
    empty = tmp_path / "empty.ms"
    _copy_rows(ms_3c273, empty, "ANTENNA1 < 0")
    return {
        "missing": (str(tmp_path / "nope.ms"), "does not exist; give the path of a MeasurementSet directory"),
        "not_ms": (
            str(not_ms),
            (
                "is a directory but not a MeasurementSet (no casacore MS table in it); "
                "give the top-level .ms directory"
            ),
        ),
        "file": (
            str(a_file),
            (
                "is a file, not a MeasurementSet (an MS is a directory); "
                "convert UVFITS or other formats to an MS first (CASA's importuvfits)"
            ),
        ),
        "empty": (str(empty), "is an empty MeasurementSet (no visibility rows); nothing to image"),
    }


@pytest.mark.parametrize("case", ["missing", "not_ms", "file", "empty"])
def test_bad_ms_leaves_repo_unchanged(repo, ms_3c273, tmp_path, capsys, case):
    bad_path, expected = _bad_inputs(tmp_path, ms_3c273)[case]
    snapshot = registry_snapshot(repo)
    # A good MS on the same command line is not ingested either.
    assert main(["ingest", repo, ms_3c273, bad_path]) == 1
    err = capsys.readouterr().err
    assert err == f"radio-clean: error: Nothing was ingested: {os.path.abspath(bad_path)} {expected}.\n"
    assert registry_snapshot(repo) == snapshot


def test_not_a_radio_repo(tmp_path, ms_3c273, capsys):
    plain_dir = tmp_path / "plain"
    plain_dir.mkdir()
    assert main(["ingest", str(plain_dir), ms_3c273]) == 1
    assert capsys.readouterr().err == (
        f"radio-clean: error: {plain_dir} is not a Butler repository; "
        f"create one with `radio-clean create-repo {plain_dir}`.\n"
    )
    assert os.listdir(plain_dir) == []

    rubin_repo = str(tmp_path / "rubin")
    Butler.makeRepo(rubin_repo)
    snapshot = registry_snapshot(rubin_repo)
    assert main(["ingest", rubin_repo, ms_3c273]) == 1
    assert capsys.readouterr().err == (
        f"radio-clean: error: {rubin_repo} is a Butler repository with the 'daf_butler' dimension "
        "universe, not a radio_clean one; "
        "create a radio repository with `radio-clean create-repo NEW_REPO`.\n"
    )
    assert registry_snapshot(rubin_repo) == snapshot


def test_create_repo_refuses_existing(repo, capsys):
    assert main(["create-repo", repo]) == 1
    assert capsys.readouterr().err == (
        f"radio-clean: error: {repo} already holds a Butler repository; choose a new directory.\n"
    )


def test_repo_matches_butler_create(tmp_path):
    """`butler create` with the shipped configs makes the same kind of repository."""
    from radio_clean.repo import DIMENSIONS_CONFIG, SEED_CONFIG

    path = str(tmp_path / "by_butler")
    butler_cli = os.path.join(os.path.dirname(sys.executable), "butler")
    subprocess.run(
        [butler_cli, "create", path, "--seed-config", SEED_CONFIG, "--dimension-config", DIMENSIONS_CONFIG],
        check=True,
    )
    ours = create_repo(str(tmp_path / "ours"))
    with Butler.from_config(path) as theirs:
        assert theirs.dimensions == ours.dimensions
        assert theirs.dimensions.namespace == "radio_clean"
    ours.close()


def test_butler_command_line_sees_ingested_data(repo, ms_3c273):
    assert main(["ingest", repo, ms_3c273]) == 0
    butler_cli = os.path.join(os.path.dirname(sys.executable), "butler")
    datasets = subprocess.run(
        [butler_cli, "query-datasets", repo, "visibilities", "--collections", INGEST_RUN],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "visibilities" in datasets and INGEST_RUN in datasets and "VLA" in datasets
    fields = subprocess.run(
        [butler_cli, "query-dimension-records", repo, "field"], check=True, capture_output=True, text=True
    ).stdout
    assert "3C273" in fields and "187.27" in fields
