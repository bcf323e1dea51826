"""radio_clean on a PostgreSQL registry: the repository a cluster's jobs share.

A real PostgreSQL server (Debian's ``postgresql`` with ``postgresql-contrib``,
started in a temporary directory for this module) holds the registry; each test
has a database of its own. The tests are those run on SQLite elsewhere, through
the same helpers: two ``radio-clean image`` processes at once into one
repository (tests/test_failures.py), a run killed in a cycle and resumed to the
same images as a run never killed (tests/test_resume.py; here the run never
killed is on SQLite, so the two registries must also give the same images).
They are skipped, saying why, only where no server can be started.
"""

import os
import threading
import time

import pytest
import yaml
from lsst.daf.butler import Butler
from postgres_server import PostgresUnavailable, start_postgres_server
from test_failures import _LONG, _assert_one_sentence, _cli, _collections, assert_two_runs_at_once
from test_resume import _assert_same, _command, _kill_during_cycle, _products

from radio_clean.cli import main
from radio_clean.repo import repo_lock


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server for this module (skips the module, saying why, if none can be started)."""
    try:
        server = start_postgres_server()
    except PostgresUnavailable as err:
        pytest.skip(f"no PostgreSQL server: {err}")
    yield server
    server.stop()


@pytest.fixture
def registry_db(postgres):
    """URL of a new, empty database of the server (with ``btree_gist``)."""
    return postgres.create_database()


def _create_repo(repo, registry_db, capsys):
    status, err = _cli(["create-repo", repo, "--registry-db", registry_db], capsys)
    assert status == 0, err


def test_create_repo_and_ingest(tmp_path, registry_db, ms_3c273, capsys):
    repo = tmp_path / "repo"
    _create_repo(repo, registry_db, capsys)
    # The registry is the database given, not a file beside butler.yaml.
    assert os.listdir(repo) == ["butler.yaml"]
    assert yaml.safe_load((repo / "butler.yaml").read_text())["registry"]["db"] == registry_db
    for _ in range(2):  # the second time finds it ingested
        status, err = _cli(["ingest", repo, ms_3c273], capsys)
        assert status == 0, err
    with Butler.from_config(str(repo)) as butler:
        assert butler.dimensions.namespace == "radio_clean"
        refs = butler.query_datasets("visibilities", collections="raw/visibilities")
        assert [ref.dataId["instrument"] for ref in refs] == ["VLA"]
        assert [r.name for r in butler.registry.queryDimensionRecords("field")] == ["3C273"]
    # The same database cannot hold a second repository.
    status, err = _cli(["create-repo", tmp_path / "other", "--registry-db", registry_db], capsys)
    _assert_one_sentence(
        status,
        err,
        1,
        f"Cannot create a repository with registry {registry_db}: the database already holds a Butler "
        "registry; give an empty database (or another --registry-namespace).",
    )
    assert not (tmp_path / "other" / "butler.yaml").exists()


def test_create_repo_without_a_server(tmp_path, capsys):
    url = f"postgresql://postgres@/none?host={tmp_path}"
    status, err = _cli(["create-repo", tmp_path / "repo", "--registry-db", url], capsys)
    assert status == 1
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"radio-clean: error: Cannot create a repository with registry {url}: ")
    assert not (tmp_path / "repo" / "butler.yaml").exists()


def test_two_repositories_in_one_database(tmp_path, registry_db, capsys):
    # A shared server: one database, a schema (namespace) per repository.
    for name in ("survey", "reprocessing"):
        status, err = _cli(
            ["create-repo", tmp_path / name, "--registry-db", registry_db, "--registry-namespace", name],
            capsys,
        )
        assert status == 0, err
    assert _collections(tmp_path / "survey") == _collections(tmp_path / "reprocessing") == {}


def test_repo_lock_holds_across_paths_to_one_registry(tmp_path, registry_db, capsys):
    # A directory lock cannot see a second path to the repository (a URI, another machine's mount);
    # on PostgreSQL the lock is the registry's own, so it can.
    repo = tmp_path / "repo"
    _create_repo(repo, registry_db, capsys)
    held = threading.Event()
    released = []

    def hold():
        with repo_lock(str(repo)):
            held.set()
            time.sleep(1.0)
            released.append(time.monotonic())

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(30)
    with repo_lock(f"file://{repo}/"):
        entered = time.monotonic()
    holder.join()
    assert released and entered >= released[0]


def test_two_runs_at_once(tmp_path, registry_db, ms_3c273, capsys):
    repo = tmp_path / "repo"
    _create_repo(repo, registry_db, capsys)
    assert_two_runs_at_once(tmp_path, ms_3c273, repo)


def test_killed_run_resumes_to_the_images_of_sqlite(tmp_path, registry_db, demo_ms_dir, capsys):
    ms = str(demo_ms_dir / "3C273XC1.ms")
    settings = _LONG[1::2]  # the short cycles of test_failures, as --set values
    on_sqlite = tmp_path / "sqlite"
    assert main(_command(ms, on_sqlite, settings, 1)) == 0

    on_postgres = tmp_path / "postgres"
    _create_repo(on_postgres / "repo", registry_db, capsys)
    arguments = _command(ms, on_postgres, settings, 1)
    _kill_during_cycle(arguments, str(on_postgres / "repo"), "images/run/cycle002")
    assert main(arguments) == 0
    _assert_same(_products(on_postgres), _products(on_sqlite))
