"""The warm engine of the casatools bridge gives the bits a fresh set-up gives.

A CLEAN chain (PSF, dirty image, masks, minor and major cycles, restore)
runs through `radio_clean.casa` twice in one process: warm (the engine keeps
scratch images, imager parameters and the synthesisimager that made the PSF
between calls) and
cold (`clear_engine_cache` before every call, as in a fresh process). Every
image (pixels, coordinates, unit, beam, provenance) and every iteration
summary and history must be the same, bit for bit; and so for two chains
whose calls are interleaved, as channel chunks of a cube run in one process.
"""

import glob
import os
import subprocess

import numpy as np
import pytest

from radio_clean import casa
from radio_clean._scratch import remove_stale_scratch, scratch_host
from radio_clean.casa import IterationHistory, _synthesis, read_ms_info
from radio_clean.ms import MeasurementSetHandle
from radio_clean.tasks.inputs import ms_selections

FIELD = "3C273"
# Provenance CASA writes that is not a function of the inputs (free memory when the image was made).
VOLATILE_PROVENANCE = {"memavail"}

HOGBOM_USER_MASK = {
    "imsize": [128],
    "cell": ["1arcsec"],
    "niter": 300,
    "datacolumn": "data",
    "deconvolver": "hogbom",
    "weighting": "briggs",
    "usemask": "user",
    "mask": "circle[[64pix,64pix],12pix]",
}
MTMFS_USER_MASK = {**HOGBOM_USER_MASK, "deconvolver": "mtmfs", "nterms": 2}
# 4 arcsec cells: the primary beam falls below pblimit in the corners.
CLARK_PB_MASK = {
    "imsize": [128],
    "cell": ["4arcsec"],
    "niter": 200,
    "datacolumn": "data",
    "deconvolver": "clark",
    "weighting": "natural",
    "usemask": "pb",
    "pbmask": 0.5,
}


@pytest.fixture(scope="module")
def selections(demo_ms_dir):
    path = str(demo_ms_dir / "3C273XC1.ms")
    band = read_ms_info(path).spectral_windows[0].band_name
    return ms_selections([MeasurementSetHandle(path)], FIELD, band)


@pytest.fixture(autouse=True)
def fresh_engine():
    casa.clear_engine_cache()
    yield
    casa.clear_engine_cache()


def _chain_steps(selections, parameters, products, max_cycles=3):
    """Run a CLEAN chain one call per step (a generator), keeping every result in ``products``."""
    psf = products["psf"] = casa.make_psf(selections, parameters)
    yield
    residual = products["residual_c0"] = casa.run_major_cycle(selections, parameters, psf)
    yield
    model, mask, history = {}, None, IterationHistory()
    for cycle in range(1, max_cycles + 1):
        products[f"sidelobe_c{cycle}"] = casa.psf_sidelobe_level(parameters, {**psf, **residual}, selections)
        yield
        # The mask each cycle, the previous one going on (as AutoMaskTask's casatools implementation).
        previous = {"mask": mask} if mask is not None else {}
        mask = products[f"mask_c{cycle}"] = casa.update_mask(
            parameters, {**psf, **residual, **model, **previous}, selections
        )
        yield
        images = {**psf, **residual, **model, "mask": mask}
        result = casa.run_minor_cycle(parameters, images, history, selections)
        history, model = result.history, result.models
        products[f"model_c{cycle}"] = model
        products[f"summary_c{cycle}"] = result.summary
        products[f"history_c{cycle}"] = history.to_dict()
        yield
        if history.stopped:
            break
        residual = products[f"residual_c{cycle}"] = casa.run_major_cycle(
            selections, parameters, {**psf, **model}
        )
        yield
    products["restored"] = casa.restore_images(parameters, {**psf, **residual, **model}, selections)


def _run(chains, *, cold, max_cycles=3):
    """Run chains (selections, parameters), their calls interleaved; cold clears the engine before each."""
    products = [{} for _ in chains]
    steps = [_chain_steps(*chain, out, max_cycles) for chain, out in zip(chains, products)]
    while steps:
        for step in list(steps):
            if cold:
                casa.clear_engine_cache()
            try:
                next(step)
            except StopIteration:
                steps.remove(step)
    return products


def _assert_same_image(warm, cold, name):
    np.testing.assert_array_equal(warm.pixels.view(np.uint32), cold.pixels.view(np.uint32), err_msg=name)
    assert not warm.differences(cold, compare_provenance=False), (name, warm.differences(cold))
    warm_provenance, cold_provenance = (
        {key: value for key, value in image.provenance.items() if key not in VOLATILE_PROVENANCE}
        for image in (warm, cold)
    )
    assert warm_provenance == cold_provenance, name


def _assert_same_products(warm, cold):
    assert warm.keys() == cold.keys()
    for name in warm:
        if isinstance(warm[name], dict) and all(hasattr(image, "pixels") for image in warm[name].values()):
            assert warm[name].keys() == cold[name].keys(), name
            for kind in warm[name]:
                _assert_same_image(warm[name][kind], cold[name][kind], f"{name}/{kind}")
        elif hasattr(warm[name], "pixels"):
            _assert_same_image(warm[name], cold[name], name)
        else:
            # Summaries, histories (records replayed into the iteration controller), sidelobe levels.
            assert repr(warm[name]) == repr(cold[name]), name


@pytest.fixture
def imager_count(monkeypatch):
    """Count the synthesisimagers made (each one selects data and computes imaging weights)."""
    count = {"made": 0}
    made = _synthesis.casatools.synthesisimager

    def counting():
        count["made"] += 1
        return made()

    monkeypatch.setattr(_synthesis.casatools, "synthesisimager", counting)
    return count


@pytest.mark.parametrize("parameters", [HOGBOM_USER_MASK, MTMFS_USER_MASK], ids=["hogbom", "mtmfs"])
def test_warm_chain_is_cold_chain(selections, parameters, imager_count):
    """A chain run warm gives exactly what it gives with every call set up afresh."""
    (warm,) = _run([(selections, parameters)], cold=False)
    warm_imagers = imager_count["made"]
    # Restoring, a chain's last step, closed its tools and removed its scratch.
    assert not casa._engine._chains
    (cold,) = _run([(selections, parameters)], cold=True)
    cold_imagers = imager_count["made"] - warm_imagers

    cycles = sum(name.startswith("summary_c") for name in warm)
    assert cycles >= 3, "the chain should run several cycles"
    _assert_same_products(warm, cold)
    # Warm: the imager that made the PSF makes all the major cycles; cold: one per call.
    assert warm_imagers == 1
    assert cold_imagers == 1 + sum(name.startswith("residual_c") for name in cold)


def test_interleaved_chains_are_their_cold_chains(selections, imager_count):
    """Two chains with different parameters, their calls interleaved in one process, each as if alone."""
    chains = [(selections, HOGBOM_USER_MASK), (selections, CLARK_PB_MASK)]
    warm = _run(chains, cold=False)
    assert imager_count["made"] == 2  # one per chain, for its PSF and all its major cycles
    cold = _run(chains, cold=True)
    for warm_products, cold_products in zip(warm, cold):
        _assert_same_products(warm_products, cold_products)


def test_clear_engine_cache_removes_scratch(selections):
    """The scratch directories of the engine go with clear_engine_cache (as at process exit)."""
    # This process's scratch only: other test processes (pytest -n) make theirs at the same time.
    pattern = os.path.join(casa._engine.tempfile.gettempdir(), f"radio_clean-warm-*-{os.getpid()}-*")
    before = set(glob.glob(pattern))
    psf = casa.make_psf(selections, CLARK_PB_MASK)
    casa.run_major_cycle(selections, CLARK_PB_MASK, psf)
    made = set(glob.glob(pattern)) - before
    assert len(made) == 1
    casa.clear_engine_cache()
    assert not any(os.path.exists(path) for path in made)


def test_cache_is_bounded(selections, monkeypatch):
    """At most RADIO_CLEAN_WARM_CHAINS chains are kept; 0 keeps none."""
    psf = casa.make_psf(selections, CLARK_PB_MASK)
    monkeypatch.setenv("RADIO_CLEAN_WARM_CHAINS", "2")
    first = casa.run_major_cycle(selections, CLARK_PB_MASK, psf)
    for niter in (1, 2, 3):
        casa.run_major_cycle(selections, {**CLARK_PB_MASK, "niter": niter}, psf)
    assert len(casa._engine._chains) == 2
    monkeypatch.setenv("RADIO_CLEAN_WARM_CHAINS", "0")
    again = casa.run_major_cycle(selections, CLARK_PB_MASK, psf)
    assert len(casa._engine._chains) == 0
    np.testing.assert_array_equal(again["residual"].pixels, first["residual"].pixels)


def test_scratch_of_dead_processes_is_removed(tmp_path, monkeypatch):
    """Scratch left by a process killed outright goes when another process on the host makes a chain."""
    monkeypatch.setattr(casa._engine.tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = scratch_host()
    stale = tmp_path / f"radio_clean-warm-{host}-{dead.pid}-abcdefgh"
    (stale / "imaging").mkdir(parents=True)
    alive = tmp_path / f"radio_clean-warm-{host}-{os.getppid()}-abcdefgh"
    alive.mkdir()
    remove_stale_scratch("radio_clean-warm-")
    assert not stale.exists()
    assert alive.exists()


def test_spectral_windows_of_a_band_are_read_once_while_the_ms_is_unchanged(ms_3c273, monkeypatch):
    """Every quantum asks which spectral windows are its band's; the MS is read again only if it changed."""
    from radio_clean.casa import _ms

    band = read_ms_info(ms_3c273).spectral_windows[0].band_name
    reads = []
    read = _ms._spectral_windows_of_band
    monkeypatch.setattr(_ms, "_spectral_windows_of_band", lambda *args: reads.append(args) or read(*args))
    assert _ms.spectral_windows_of_band(ms_3c273, band) == [0]
    assert _ms.spectral_windows_of_band(ms_3c273, band) == [0]
    assert len(reads) == 1
    table = os.path.join(ms_3c273, "SPECTRAL_WINDOW", "table.dat")
    os.utime(table, ns=(os.stat(table).st_atime_ns, os.stat(table).st_mtime_ns + 1_000_000_000))
    assert _ms.spectral_windows_of_band(ms_3c273, band) == [0]
    assert len(reads) == 2
