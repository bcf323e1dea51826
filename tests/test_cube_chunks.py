"""Cubes imaged in channel chunks (CubeImaging, a CLEAN loop per chunk) against tclean and simulations."""

import json
import os

import numpy as np
import pytest

from radio_clean.casa import read_casa_image, reattach_casa_log
from radio_clean.chunks import ChunkError, chunk_ranges, output_channel_count, read_channels
from radio_clean.image import RadioImage
from radio_clean.imaging import image_measurement_sets, read_parameters
from radio_clean.parameters import CleanParametersConfig, ParameterError, chunk_start
from radio_clean.repo import open_repo
from radio_clean.simulate import SkyComponent, simulate_ms

# Deep enough that every channel stops at the threshold: then each chunk's own iteration
# control (CASA's parallel cube imaging) reaches what serial tclean reaches.
NGC5921_SETTINGS = [
    "imsize=96",
    "cell=15arcsec",
    "specmode=cube",
    "niter=100000",
    "threshold=10mJy",
    "weighting=briggs",
    "datacolumn=data",
]
CHUNK_RANGES = [(0, 16), (16, 32), (32, 47), (47, 63)]


def _tclean(ms, directory, **parameters):
    from casatasks import casalog, tclean

    os.makedirs(directory, exist_ok=True)
    summary = tclean(vis=ms, imagename=os.path.join(directory, "img"), **parameters)
    reattach_casa_log(casalog)
    images = {kind: read_casa_image(os.path.join(directory, f"img.{kind}")) for kind in ("image", "residual")}
    return summary, images


def _tclean_parameters(settings):
    parameters, _ = read_parameters(None, settings)
    defaults = CleanParametersConfig().toDict()
    return {name: value for name, value in parameters.to_tclean().items() if value != defaults[name]}


@pytest.fixture(scope="module")
def ngc5921_chunked(ngc5921_prepared, tmp_path_factory):
    ms = ngc5921_prepared.line_ms
    directory = tmp_path_factory.mktemp("cube_chunks")
    parameters, _ = read_parameters(None, NGC5921_SETTINGS)
    run = image_measurement_sets(
        [ms],
        repo=str(directory / "repo"),
        export_dir=str(directory / "export"),
        parameters=parameters,
        jobs=2,
        chunk_channels=16,
    )
    tclean_parameters = _tclean_parameters(NGC5921_SETTINGS)
    serial = _tclean(ms, str(directory / "tclean_serial"), **tclean_parameters)
    per_chunk = [
        _tclean(ms, str(directory / f"tclean_{start}"), **tclean_parameters, start=start, nchan=stop - start)
        for start, stop in CHUNK_RANGES
    ]
    return run, serial, per_chunk, directory


def test_chunked_cube_matches_serial_tclean(ngc5921_chunked):
    run, (serial_summary, serial), _, directory = ngc5921_chunked
    ours = RadioImage.from_fits(str(directory / "export" / "image.fits"))
    assert ours.shape == serial["image"].shape == (1, 63, 96, 96)
    peak = np.abs(serial["image"].pixels).max()
    per_channel = np.abs(ours.pixels - serial["image"].pixels).max(axis=(0, 2, 3))
    assert per_channel.max() <= 1e-3 * peak, int(per_channel.argmax())
    np.testing.assert_allclose(ours.frequencies, serial["image"].frequencies, rtol=1e-12)
    # Channels 0 and 62 have no data and a blank PSF; CASA gives them the beam of another channel,
    # which in a chunk is not the one it picks in the whole cube.
    with_data = np.any(serial["image"].pixels != 0, axis=(0, 2, 3))
    assert with_data.sum() == 61
    for name in ("major_arcsec", "minor_arcsec", "pa_deg"):
        np.testing.assert_allclose(
            getattr(ours.restoring_beam, name)[with_data],
            getattr(serial["image"].restoring_beam, name)[with_data],
            rtol=1e-3,
        )
    # Every channel (and so every chunk) stops at the threshold, as in serial tclean.
    summary = json.loads((directory / "export" / "summary.json").read_text())
    assert serial_summary["stopcode"] == 2
    assert [chunk["stopcode"] for chunk in summary["channel_chunks"]] == [2] * len(CHUNK_RANGES)
    assert summary["stopcode"] == 2 and summary["converged"]
    assert [chunk["channels"] for chunk in summary["channel_chunks"]] == [[a, b - 1] for a, b in CHUNK_RANGES]


def test_every_chunk_equals_tclean_on_its_channels(ngc5921_chunked):
    """Chunk by chunk the pipeline is tclean on those channels (CASA's own parallel cube imaging)."""
    run, _, per_chunk, directory = ngc5921_chunked
    summary = json.loads((directory / "export" / "summary.json").read_text())
    ours = {
        kind: RadioImage.from_fits(str(directory / "export" / f"{kind}.fits"))
        for kind in ("image", "residual")
    }
    for (start, stop), chunk, (their_summary, theirs) in zip(
        CHUNK_RANGES, summary["channel_chunks"], per_chunk, strict=True
    ):
        assert (chunk["iterdone"], chunk["nmajordone"], chunk["stopcode"]) == (
            their_summary["iterdone"],
            their_summary["nmajordone"],
            their_summary["stopcode"],
        )
        for kind in ("image", "residual"):
            peak = np.abs(theirs[kind].pixels).max()
            difference = np.abs(ours[kind].pixels[:, start:stop] - theirs[kind].pixels).max()
            assert difference <= 1e-6 * peak, (kind, start)


def test_channel_range_reads_only_the_chunks_it_needs(ngc5921_chunked):
    run, _, _, directory = ngc5921_chunked
    exported = RadioImage.from_fits(str(directory / "export" / "image.fits"))
    data_id = {"instrument": "VLA", "field": run.summaries[0]["field"], "band": run.summaries[0]["band"]}
    with open_repo(str(directory / "repo"), collections=run.collection) as butler:
        channels = read_channels(butler, "image", data_id, 10, 40)
        with pytest.raises(ChunkError, match="not all in the repository"):
            read_channels(butler, "image", data_id, 60, 70)
    assert channels == exported.channel_slice(10, 40)


def test_jobs_run_every_chunk_to_its_own_stop(ngc5921_chunked):
    """With --jobs 2, each of the 4 chunks runs its own cycles, stops on its own and is restored alone.

    Every chunk has a summary for each cycle up to the one that stopped it and
    none after; each ``cycleNNN`` step ran only the chunks still cleaning; a
    chunk is restored in the ``finishNNN`` step of the cycle it stopped at, so
    chunks stopping at different cycles have finish steps of their own.
    """
    run, _, _, directory = ngc5921_chunked
    output = run.collection
    with open_repo(str(directory / "repo"), collections=output) as butler:
        finals = {
            ref.dataId["channel_chunk"]: int(butler.get(ref)["cycle"])
            for ref in butler.query_datasets("cube_clean_summary", explain=False)
        }
        assert sorted(finals) == [0, 1, 2, 3]
        summary_types = [
            dataset_type.name for dataset_type in butler.registry.queryDatasetTypes("cube_summary_c*")
        ]
        summaries = {}  # chunk -> {cycle: RUN collection of its summary}
        for name in summary_types:
            cycle = int(name.rpartition("_c")[2])
            for ref in butler.query_datasets(name, collections=output, explain=False):
                summaries.setdefault(ref.dataId["channel_chunk"], {})[cycle] = ref.run
        images = {
            ref.dataId["channel_chunk"]: ref.run for ref in butler.query_datasets("cube_image", explain=False)
        }
        runs = set(butler.collections.query(output + "/*"))
        # Each chunk's summaries are its own, cycle after cycle, until it stopped, and none after.
        for chunk, final in finals.items():
            assert summaries[chunk] == {
                cycle: f"{output}/start" if cycle == 1 else f"{output}/cycle{cycle - 1:03d}"
                for cycle in range(1, final + 1)
            }, chunk
            assert butler.get(f"cube_summary_c{final}", channel_chunk=chunk, **_chain(run))["stopped"]
            assert images[chunk] == f"{output}/finish{final:03d}", chunk
    # One RUN per step: start, a cycle step while any chunk went on, a finish step per final cycle.
    assert runs == (
        {f"{output}/start"}
        | {f"{output}/cycle{cycle:03d}" for cycle in range(1, max(finals.values()))}
        | {f"{output}/finish{final:03d}" for final in finals.values()}
    )
    print(f"final cycles per chunk: {finals}")
    assert len(set(finals.values())) > 1, "the chunks all stopped at the same cycle: nothing to test here"


def _chain(run):
    summary = run.summaries[0]
    return {"instrument": "VLA", "field": summary["field"], "band": summary["band"]}


def test_simulated_cube_fluxes_in_chunks(tmp_path):
    """Two chunks of a simulated line-free cube: every channel's flux is the truth, and tclean's."""
    sky = simulate_ms(
        str(tmp_path / "sim.ms"),
        [SkyComponent(1.0, (0.0, 0.0), spectral_index=-0.7), SkyComponent(0.4, (-90.0, 60.0))],
        array="vla.d",
        freq_start_hz=1.4e9,
        chan_width_hz=16e6,
        n_chan=6,
        hours=1.0,
        integration_s=120.0,
        noise_jy=0.05,
        seed=5,
    )
    settings = [
        "imsize=128",
        "cell=8arcsec",
        "specmode=cube",
        "niter=5000",
        "threshold=20mJy",
        "datacolumn=data",
    ]
    parameters, _ = read_parameters(None, settings)
    image_measurement_sets(
        [sky.path],
        repo=str(tmp_path / "repo"),
        export_dir=str(tmp_path / "export"),
        parameters=parameters,
        chunk_channels=3,
    )
    ours = RadioImage.from_fits(str(tmp_path / "export" / "image.fits"))
    _, theirs = _tclean(sky.path, str(tmp_path / "tclean"), **_tclean_parameters(settings))
    peak = np.abs(theirs["image"].pixels).max()
    assert np.abs(ours.pixels - theirs["image"].pixels).max() <= 1e-3 * peak
    # The 1 Jy source at the phase centre (pixel 64, 64), alpha = -0.7.
    truth = sky.components[0].flux_at(ours.frequencies)
    np.testing.assert_allclose(ours.pixels[0, :, 64, 64], truth, rtol=0.03)


def test_chunk_arithmetic():
    assert chunk_ranges(63, 16) == [(0, 16), (16, 32), (32, 47), (47, 63)]
    assert chunk_ranges(10, 10) == [(0, 10)]
    assert chunk_start("", "", 16) == "16"
    assert float(chunk_start("1.41GHz", "24.4kHz", 10).removesuffix("GHz")) == pytest.approx(1.410244)
    assert chunk_start("-100km/s", "5km/s", 3) == "-85.0km/s"
    tclean = CleanParametersConfig().to_tclean(channels=(16, 32))
    assert (tclean["start"], tclean["nchan"]) == (16, 16)
    parameters = CleanParametersConfig()
    parameters.spw = ":10~49"
    assert output_channel_count(parameters, 63) == 40
    parameters.width = "2"
    assert output_channel_count(parameters, 63) == 20


def test_chunks_need_a_width_with_a_frequency_start():
    with pytest.raises(ParameterError, match="need width in the same kind of unit"):
        chunk_start("1.41GHz", "", 3)
    parameters = CleanParametersConfig()
    parameters.start = "1.41GHz"
    with pytest.raises(ChunkError, match="set nchan as well"):
        output_channel_count(parameters, 63)
