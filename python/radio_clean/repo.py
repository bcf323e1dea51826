"""radio_clean Butler repositories: the radio dimension universe and its seed config."""

from __future__ import annotations

__all__ = [
    "DIMENSIONS_CONFIG",
    "NotARadioRepoError",
    "SEED_CONFIG",
    "UNIVERSE_NAMESPACE",
    "create_repo",
    "open_repo",
]

import os
from importlib.resources import files

from lsst.daf.butler import Butler, Config

_CONFIG_DIR = files("radio_clean").joinpath("config")
DIMENSIONS_CONFIG = str(_CONFIG_DIR.joinpath("dimensions.yaml"))
"""Path of the radio dimension universe definition."""
SEED_CONFIG = str(_CONFIG_DIR.joinpath("butler.yaml"))
"""Path of the seed configuration (storage classes, formatters, file templates)."""
UNIVERSE_NAMESPACE = "radio_clean"


class NotARadioRepoError(RuntimeError):
    """The path is not a Butler repository made for radio_clean."""


def create_repo(root: str, *, registry_db: str | None = None) -> Butler:
    """Create a Butler repository that understands radio data.

    Parameters
    ----------
    root : `str`
        Directory (or URI) of the new repository.
    registry_db : `str`, optional
        SQLAlchemy URL of the registry database, e.g.
        ``postgresql://user@host/dbname``; default is SQLite inside ``root``.

    Returns
    -------
    butler : `lsst.daf.butler.Butler`
        A writeable Butler on the new repository.

    Raises
    ------
    FileExistsError
        If ``root`` already holds a Butler repository.
    """
    if os.path.exists(os.path.join(root, "butler.yaml")):
        raise FileExistsError(f"{root} already holds a Butler repository; choose a new directory.")
    seed = Config(SEED_CONFIG)
    if registry_db is not None:
        seed["registry", "db"] = registry_db
    Butler.makeRepo(root, config=seed, dimensionConfig=Config(DIMENSIONS_CONFIG))
    return Butler.from_config(root, writeable=True)


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
