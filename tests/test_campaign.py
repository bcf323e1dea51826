"""Campaigns (radio-clean campaign) with the middleware's mock tasks: progress, retry of failed chains alone,
re-processing into a new collection beside the old one.

The repository is synthetic (`radio_clean.campaign.synthetic_repository`:
dimension records and ``visibilities`` datasets, no MeasurementSet) and the
tasks are `lsst.pipe.base.tests.mocks.MockPipelineTask`, made to raise with
its ``fail_condition`` for chosen fields: what is tested is the loop's
bookkeeping, not imaging.
"""

import pytest
from lsst.daf.butler import Butler

from radio_clean.campaign import campaign_chains, run_campaign, synthetic_repository
from radio_clean.cli import main
from radio_clean.loop import MockRun, _chain_table

PIPELINE = "resource://radio_clean/pipelines/ContinuumImaging.yaml"
BAND = "1000MHz-1ch"
N_SIMULATED_FIELDS = 6
"""Fields imaged for real in-process (-j 2); tests/test_bps_campaign.py images twenty through bps."""


def _chain(field):
    return (("instrument", "SIM"), ("field", field), ("band", BAND))


def test_failed_chains_are_retried_alone_and_new_parameters_go_beside(tmp_path, capsys):
    repo = str(tmp_path / "repo")
    chains = synthetic_repository(repo, n_fields=4, fields_per_observation=2)
    assert len(chains) == 4
    # f00001 fails in the start step (its first minor cycle), f00002 in the finish step.
    status = main(
        [
            "campaign", repo, "-o", "campaign/v1", "--mock",
            "--mock-failure", "deconvolve:field = 'f00001'",
            "--mock-failure", "restore:field = 'f00002'",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert status == 1
    lines = out.splitlines()
    # A progress line after every step: start, cycle001 (CLEAN stops at minor cycle 2), finish002.
    assert "campaign/v1/start: 0 converged, 1 failed, 3 remaining" in lines[0]
    assert "campaign/v1/cycle001: 0 converged, 1 failed, 3 remaining" in lines[1]
    assert "campaign/v1/finish002: 2 converged, 2 failed, 0 remaining" in lines[2]
    assert sum("failed: _mock_deconvolve on" in line and "f00001" in line for line in lines) == 1
    assert sum("failed: _mock_restore on" in line and "f00002" in line for line in lines) == 1
    assert "2 of 4 chains converged, 2 failed, 0 remaining" in out

    # The retry (the cause fixed: no injected failure) runs the quanta of the two failed chains alone.
    report = run_campaign(repo, pipeline_uri=PIPELINE, output="campaign/v1", mock=MockRun(cycles=2))
    assert report.ran == [_chain("f00001"), _chain("f00002")]
    assert (len(report.converged), len(report.failed), report.remaining) == (4, 0, 0)

    # New parameters: a new collection beside the old one; both hold every field's images.
    assert main(["campaign", repo, "-o", "campaign/v2", "--mock", "-c", "parameters:niter=5"]) == 0
    assert "4 of 4 chains converged, 0 failed, 0 remaining" in capsys.readouterr().out
    with Butler.from_config(repo) as butler:
        images = {}
        for output in ("campaign/v1", "campaign/v2"):
            assert [c["field"] for c in campaign_chains(butler, "_mock_image", collections=[output])] == [
                "f00000", "f00001", "f00002", "f00003",
            ]  # fmt: skip
            images[output] = {ref.id for ref in butler.query_datasets("_mock_image", collections=output)}
            config = butler.get("_mock_deconvolve_config", collections=output)
            assert config.original.parameters.niter == (5 if output.endswith("v2") else 1000)
        assert not images["campaign/v1"] & images["campaign/v2"]


def test_chain_table_has_a_row_per_chain():
    chains = [_chain(f"f{index:05d}") for index in range(3)]
    table = _chain_table(chains)
    assert table.colnames == ["instrument", "field", "band"]
    assert list(table["field"]) == ["f00000", "f00001", "f00002"]


def test_bad_mock_failure_is_one_sentence(tmp_path, capsys):
    repo = str(tmp_path / "repo")
    synthetic_repository(repo, n_fields=1)
    assert main(["campaign", repo, "-o", "x", "--mock", "--mock-failure", "deconvolve"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "radio-clean: error: --mock-failure 'deconvolve' is not of the form LABEL:WHERE."


def test_campaign_of_simulated_fields_recovers_every_flux(tmp_path, capsys):
    """Several simulated MSs imaged for real through ``radio-clean campaign -j 2``.

    One field each, a point source of known flux at the phase centre (the
    image centre): every field's restored peak is its true flux.
    """
    import numpy as np

    from radio_clean.simulate import SkyComponent, simulate_ms

    fluxes = {f"F{index:02d}": 0.2 + 0.1 * index for index in range(N_SIMULATED_FIELDS)}
    paths = []
    for index, (name, flux) in enumerate(fluxes.items()):
        sky = simulate_ms(
            str(tmp_path / f"{name}.ms"),
            [SkyComponent(flux)],
            array="vla.d",
            phase_centre=(187.5 + 2.0 * index, 10.0),
            n_chan=1,
            hours=0.5,
            integration_s=120.0,
            field_name=name,
        )
        paths.append(sky.path)
    repo = str(tmp_path / "repo")
    assert main(["create-repo", repo]) == 0
    capsys.readouterr()
    status = main(
        [
            "campaign", repo, *paths, "-o", "survey/v1", "-j", "2",
            "-c", "parameters:imsize=[32]", "-c", "parameters:cell=['16arcsec']",
            "-c", "parameters:niter=30", "-c", "parameters:weighting=natural",
            "-c", "parameters:datacolumn=data",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0, out
    assert f"{len(fluxes)} of {len(fluxes)} chains converged, 0 failed, 0 remaining" in out
    with Butler.from_config(repo) as butler:
        for ref in butler.query_datasets("image", collections="survey/v1"):
            image = butler.get(ref).pixels[0, 0]
            peak = float(image[16, 16])
            assert np.unravel_index(np.argmax(image), image.shape) == (16, 16)
            assert peak == pytest.approx(fluxes[ref.dataId["field"]], rel=0.02), ref.dataId["field"]


def _restore_inputs(butler, output):
    """What each chain's mock restore quantum read: connection -> sorted (dataset type, data ID, step)."""
    inputs = {}
    for ref in butler.query_datasets("_mock_image", collections=output):
        quantum = butler.get(ref).quantum
        inputs[ref.dataId["field"]] = {
            connection: sorted(
                (dataset.dataset_type.name, sorted(dataset.data_id.items()), dataset.run.removeprefix(output))
                for dataset in datasets
            )
            for connection, datasets in quantum.inputs.items()
        }
    return inputs


def test_finish_graph_copied_from_the_last_cycle_reads_what_a_data_query_finds(tmp_path, monkeypatch):
    """The finish step's graph, copied from the last cycle's (no registry query), equals the queried one."""
    import radio_clean.loop as loop_module

    repo = str(tmp_path / "repo")
    synthetic_repository(repo, n_fields=3, fields_per_observation=2)
    queried = []
    query_builder = loop_module.AllDimensionsQuantumGraphBuilder

    def counting_query_builder(*args, **kwargs):
        queried.append(kwargs["output_run"])
        return query_builder(*args, **kwargs)

    monkeypatch.setattr(loop_module, "AllDimensionsQuantumGraphBuilder", counting_query_builder)
    run_campaign(repo, pipeline_uri=PIPELINE, output="copied", mock=MockRun(cycles=3))
    assert queried == ["copied/start"]  # cycle001, cycle002 and finish003 copied

    def no_copies(*args, **kwargs):
        raise loop_module.UnknownInputError("copying turned off by the test")

    monkeypatch.setattr(loop_module, "NextCycleGraphBuilder", no_copies)
    run_campaign(repo, pipeline_uri=PIPELINE, output="queried", mock=MockRun(cycles=3))
    assert queried[1:] == ["queried/start", "queried/cycle001", "queried/cycle002", "queried/finish003"]
    with Butler.from_config(repo) as butler:
        copied, by_query = _restore_inputs(butler, "copied"), _restore_inputs(butler, "queried")
    assert sorted(copied) == ["f00000", "f00001", "f00002"]
    assert copied == by_query
    # The chain's MeasurementSet, the start step's PSF products, the last cycle's residual, model, summary.
    chain = [("band", BAND), ("field", "f00000"), ("instrument", "SIM")]
    assert copied["f00000"] == {
        "visibilities": [("visibilities", [("instrument", "SIM"), ("observation", 0)], "raw/visibilities")],
        **{kind: [(f"_mock_{kind}", chain, "/start")] for kind in ("psf", "pb", "sumwt")},
        "residual": [("_mock_residual_c2", chain, "/cycle002")],
        "model": [("_mock_model_c3", chain, "/cycle002")],
        "summary": [("_mock_summary_c3", chain, "/cycle002")],
    }
