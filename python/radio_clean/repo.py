"""radio_clean Butler repositories: the radio dimension universe and its seed config."""

from __future__ import annotations

__all__ = [
    "DIMENSIONS_CONFIG",
    "NotARadioRepoError",
    "RepoCreationError",
    "SEED_CONFIG",
    "UNIVERSE_NAMESPACE",
    "create_repo",
    "open_repo",
    "repo_lock",
]

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from importlib.resources import files

import sqlalchemy
from lsst.daf.butler import Butler, ButlerConfig, Config
from lsst.daf.butler.registry import RegistryConfig

_CONFIG_DIR = files("radio_clean").joinpath("config")
DIMENSIONS_CONFIG = str(_CONFIG_DIR.joinpath("dimensions.yaml"))
"""Path of the radio dimension universe definition."""
SEED_CONFIG = str(_CONFIG_DIR.joinpath("butler.yaml"))
"""Path of the seed configuration (storage classes, formatters, file templates)."""
UNIVERSE_NAMESPACE = "radio_clean"

_STAGING_PREFIX = "radio_clean-new-repo-"
"""Directory inside a repository being created where its files are made before they are moved in."""


class NotARadioRepoError(RuntimeError):
    """The path is not a Butler repository made for radio_clean."""


class RepoCreationError(RuntimeError):
    """A repository cannot be created at the path given; the message says why."""


def create_repo(
    root: str,
    *,
    registry_db: str | None = None,
    registry_namespace: str | None = None,
    exist_ok: bool = False,
) -> Butler:
    """Create a Butler repository that understands radio data.

    The repository's files are made in a staging directory inside ``root``
    and moved into place with ``butler.yaml`` last, under a lock on ``root``,
    so that processes creating the same repository at once make it once, and
    a creation that was killed leaves no repository that looks complete.

    Parameters
    ----------
    root : `str`
        Directory (or URI) of the new repository.
    registry_db : `str`, optional
        SQLAlchemy URL of the registry database, e.g.
        ``postgresql://user@host/dbname``; default is SQLite inside ``root``.
        The database must be empty in ``registry_namespace`` and, for
        PostgreSQL, have the ``btree_gist`` extension.
    registry_namespace : `str`, optional
        Schema of the registry's tables in ``registry_db``, so that one
        PostgreSQL database holds several repositories; default the
        database's default schema.
    exist_ok : `bool`, optional
        If `True`, a radio_clean repository already at ``root`` (made by
        another process just now, perhaps) is opened instead.

    Returns
    -------
    butler : `lsst.daf.butler.Butler`
        A writeable Butler on the new repository.

    Raises
    ------
    FileExistsError
        If ``root`` already holds a Butler repository (and not ``exist_ok``).
    RepoCreationError
        If ``root`` is a file, or the directory cannot be made or written,
        or the registry database cannot be used.
    """
    seed = Config(SEED_CONFIG)
    if registry_db is not None:
        seed["registry", "db"] = registry_db
    if registry_namespace is not None:
        seed["registry", "namespace"] = registry_namespace
    if "://" in root:
        with _registry_errors(registry_db):
            Butler.makeRepo(root, config=seed, dimensionConfig=Config(DIMENSIONS_CONFIG))
        return Butler.from_config(root, writeable=True)
    if os.path.exists(root) and not os.path.isdir(root):
        raise RepoCreationError(f"{root} is a file, not a directory; give a directory for the repository.")
    try:
        os.makedirs(root, exist_ok=True)
        with _locked(root):
            exists = os.path.exists(os.path.join(root, "butler.yaml"))
            if not exists:
                with _registry_errors(registry_db):
                    _make_repo_in_place(root, seed)
    except OSError as err:
        raise RepoCreationError(
            f"Cannot create a repository in {root} ({err.strerror or err}); "
            "give a directory you can write to."
        ) from None
    if exists and not exist_ok:
        raise FileExistsError(f"{root} already holds a Butler repository; choose a new directory.")
    return open_repo(root, writeable=True) if exists else Butler.from_config(root, writeable=True)


@contextlib.contextmanager
def _registry_errors(registry_db: str | None) -> Iterator[None]:
    """Say in one sentence why a registry database given by the user cannot hold a new repository."""
    if registry_db is None:
        yield
        return
    try:
        yield
    except (sqlalchemy.exc.SQLAlchemyError, RuntimeError, ImportError) as err:
        if isinstance(err, sqlalchemy.exc.IntegrityError) or "non-empty database" in str(err):
            reason = "the database already holds a Butler registry; give an empty database (or another "
            reason += "--registry-namespace)"
        else:
            reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0].rstrip(".")
        message = f"Cannot create a repository with registry {registry_db}: {reason}."
        raise RepoCreationError(message) from None


@contextlib.contextmanager
def repo_lock(root: str) -> Iterator[None]:
    """Hold an exclusive lock on a repository while registering what two processes could race on.

    Two runs that ingest the same MeasurementSet at once would both find it
    new and both insert its dimension records; under this lock the second
    finds it ingested. A repository whose registry is PostgreSQL is locked in
    the database (an advisory lock named after its schema), so processes on
    every machine that shares it wait for each other, whatever path or URI
    they open it by; one on SQLite is locked by its directory. A repository
    given by URI with an SQLite registry is not locked.
    """
    registry = _registry_config(root)
    if registry is not None and registry.getDialect() == "postgresql":
        with _advisory_lock(registry):
            yield
        return
    if "://" in root:
        yield
        return
    with _locked(root):
        yield


def _registry_config(root: str) -> RegistryConfig | None:
    try:
        return RegistryConfig(ButlerConfig(root))
    except Exception:
        return None  # not (yet) a repository: its directory is what there is to lock


@contextlib.contextmanager
def _advisory_lock(registry: RegistryConfig) -> Iterator[None]:
    """Hold PostgreSQL's session advisory lock for radio_clean in this registry's schema."""
    name = f"radio_clean.repo_lock:{registry.get('namespace') or ''}"
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    engine = registry.getDatabaseClass().makeEngine(registry.connectionString, writeable=True)
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
            connection.commit()
            try:
                yield
            finally:
                # Also released when the connection closes (a killed process's server session ends).
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                connection.commit()
    finally:
        engine.dispose()


@contextlib.contextmanager
def _locked(directory: str) -> Iterator[None]:
    """Hold an exclusive lock on a directory (other processes creating a repository there wait)."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _make_repo_in_place(root: str, seed: Config) -> None:
    """Make the repository's files in a staging directory, then move them into ``root``, ``butler.yaml`` last.

    Must be called with the lock on ``root`` held: staging directories found
    then were left by creations that were killed.
    """
    for name in os.listdir(root):
        if name.startswith(_STAGING_PREFIX):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    staging = tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=root)
    try:
        # The seed config names the database and datastore relative to the config's own directory
        # (no dot in the staging name: makeRepo would take what follows it for a file format).
        Butler.makeRepo(staging, config=seed, dimensionConfig=Config(DIMENSIONS_CONFIG))
        names = sorted(os.listdir(staging), key=lambda name: name == "butler.yaml")
        for name in names:
            os.replace(os.path.join(staging, name), os.path.join(root, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def open_repo(root: str, *, writeable: bool = False, **kwargs) -> Butler:
    """Open an existing radio_clean repository, refusing any other kind.

    Parameters
    ----------
    root : `str`
        Repository directory, URI or alias.
    writeable : `bool`, optional
        Whether the Butler may write.
    **kwargs
        Passed to `lsst.daf.butler.Butler.from_config` (``collections``,
        ``run``, ...).

    Returns
    -------
    butler : `lsst.daf.butler.Butler`
        The Butler.

    Raises
    ------
    NotARadioRepoError
        If ``root`` is not a Butler repository, or is one whose dimension
        universe is not radio_clean's.
    """
    if "://" not in root and not os.path.exists(os.path.join(root, "butler.yaml")):
        raise NotARadioRepoError(
            f"{root} is not a Butler repository; create one with `radio-clean create-repo {root}`."
        )
    try:
        butler = Butler.from_config(root, writeable=writeable, **kwargs)
    except Exception as err:
        raise NotARadioRepoError(f"{root} could not be opened as a Butler repository: {err}") from err
    namespace = butler.dimensions.namespace
    if namespace != UNIVERSE_NAMESPACE:
        butler.close()
        raise NotARadioRepoError(
            f"{root} is a Butler repository with the '{namespace}' dimension universe, not a radio_clean "
            f"one; create a radio repository with `radio-clean create-repo NEW_REPO`."
        )
    return butler
