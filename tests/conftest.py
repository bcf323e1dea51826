"""Shared fixtures: real MeasurementSets made once per test session (per xdist worker)."""

import shutil

import pytest

from radio_clean.casa import set_up_casa

# Tests use casatools and casatasks directly too: set CASA up before any test module imports them.
set_up_casa()


@pytest.fixture(scope="session")
def demo_ms_dir(tmp_path_factory):
    """Directory holding 3C273XC1.ms made from the VLA UVFITS shipped with casadata."""
    from radio_clean.demo import write_demo_data

    directory = tmp_path_factory.mktemp("demo")
    write_demo_data(str(directory))
    return directory


@pytest.fixture
def ms_3c273(demo_ms_dir, tmp_path):
    """A private copy of 3C273XC1.ms that a test may ingest, move or damage."""
    path = tmp_path / "3C273XC1.ms"
    shutil.copytree(demo_ms_dir / "3C273XC1.ms", path)
    return str(path)


@pytest.fixture(scope="session")
def ngc5921_prepared(tmp_path_factory):
    """NGC5921 calibrated once per session: `PreparedData` with the calibrated and line MSs.

    Treat the MeasurementSets as read-only; use ``ngc5921_line_ms`` for a copy to modify.
    """
    from ngc5921_utils import prepare_ngc5921

    return prepare_ngc5921(str(tmp_path_factory.mktemp("ngc5921")))


@pytest.fixture
def ngc5921_line_ms(ngc5921_prepared, tmp_path):
    """A private copy of the calibrated, continuum-subtracted NGC5921 MS."""
    path = tmp_path / "NGC5921.line.ms"
    shutil.copytree(ngc5921_prepared.line_ms, path)
    return str(path)
