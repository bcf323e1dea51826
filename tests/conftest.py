"""Shared fixtures: real MeasurementSets made once per test session (per xdist worker)."""

import shutil

import pytest

import radio_clean  # noqa: F401  (sets up casatools before anything imports it)


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
