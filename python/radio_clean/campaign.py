"""Campaigns: every field and band of many MeasurementSets imaged with the CLEAN loop, and retried.

A campaign is a run of `radio_clean.loop.CleanLoop` over a data query of a
repository (every field and band of the MSs given, by default) into one
output collection, with a progress line after every step: chains (field,
band, channel chunk) converged, failed and remaining. Running the same
campaign again retries only the chains that failed (the loop resumes: every
step already registered is skipped, quantum by quantum); new parameters go
to a new output collection, beside the old one.

`synthetic_repository` makes a repository of ``N`` fields without any
MeasurementSet, for benchmarks and tests of the bookkeeping with the
middleware's mock tasks (`radio_clean.loop.MockRun`).
"""

from __future__ import annotations

__all__ = ["CampaignReport", "campaign_chains", "run_campaign", "synthetic_repository"]

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import astropy.time
from lsst.daf.butler import Butler, DatasetRef, FileDataset, Timespan

from .ingest import INGEST_RUN, visibilities_dataset_type
from .loop import ChainOutcome, CleanLoop, LoopError, LoopProgress, MockRun
from .repo import create_repo

_log = logging.getLogger(__name__)

SYNTHETIC_INSTRUMENT = "SIM"
"""Instrument of a `synthetic_repository`."""

_STUB_MS = "stub.ms"
"""The one (empty) directory every synthetic ``visibilities`` dataset points at; mock tasks never read it."""


def synthetic_repository(
    root: str, *, n_fields: int, n_bands: int = 1, fields_per_observation: int = 10
) -> list[tuple[str, str]]:
    """Make a repository of ``n_fields`` fields x ``n_bands`` bands, registered as ingest would.

    Dimension records (instrument, observation, field, band and which
    observation holds which field and band) and one ``visibilities`` dataset
    per observation in ``raw/visibilities``, all pointing at one empty
    directory: enough for graph building and mock execution, nothing CASA
    could read.

    Parameters
    ----------
    root : `str`
        Directory of the new repository.
    n_fields : `int`
        Number of fields (``f00000``, ``f00001``...).
    n_bands : `int`, optional
        Number of bands, each in every observation.
    fields_per_observation : `int`, optional
        Fields of each observation (MeasurementSet).

    Returns
    -------
    chains : `list` [`tuple` [`str`, `str`]]
        ``(field, band)`` of every chain.
    """
    butler = create_repo(root)
    try:
        registry = butler.registry
        instrument = SYNTHETIC_INSTRUMENT
        fields = [f"f{index:05d}" for index in range(n_fields)]
        bands = [f"{1000 + 100 * index}MHz-1ch" for index in range(n_bands)]
        n_observations = -(-n_fields // fields_per_observation)
        start = astropy.time.Time(60000.0, format="mjd", scale="utc")
        hour = astropy.time.TimeDelta(3600.0, format="sec")
        stub = os.path.join(os.path.abspath(root), _STUB_MS)
        os.makedirs(stub, exist_ok=True)
        registry.insertDimensionData("instrument", {"name": instrument})
        registry.insertDimensionData(
            "field",
            *[
                {"instrument": instrument, "name": name, "ra": (index * 0.5) % 360.0, "dec": -30.0}
                for index, name in enumerate(fields)
            ],
        )
        registry.insertDimensionData(
            "band",
            *[
                {
                    "instrument": instrument,
                    "name": name,
                    "freq_min": 1.0e9 + 1.0e8 * index,
                    "freq_max": 1.0e9 + 1.0e8 * index,
                    "n_chan": 1,
                    "chan_width": 1.0e6,
                    "freq_frame": "TOPO",
                }
                for index, name in enumerate(bands)
            ],
        )
        registry.insertDimensionData(
            "observation",
            *[
                {
                    "instrument": instrument,
                    "id": observation,
                    "name": f"obs{observation:05d}",
                    "ms_path": stub,
                    "fingerprint": f"{observation:064x}",
                    "n_rows": 0,
                    "observer": "",
                    "project": "synthetic",
                    "data_columns": "DATA",
                    "timespan": Timespan(start + observation * hour, start + (observation + 1) * hour),
                }
                for observation in range(n_observations)
            ],
        )
        registry.insertDimensionData(
            "observation_field",
            *[
                {
                    "instrument": instrument,
                    "observation": index // fields_per_observation,
                    "field": name,
                    "field_ids": str(index % fields_per_observation),
                }
                for index, name in enumerate(fields)
            ],
        )
        registry.insertDimensionData(
            "observation_band",
            *[
                {"instrument": instrument, "observation": observation, "band": band, "spw_ids": str(spw)}
                for observation in range(n_observations)
                for spw, band in enumerate(bands)
            ],
        )
        dataset_type = visibilities_dataset_type(butler)
        registry.registerDatasetType(dataset_type)
        registry.registerRun(INGEST_RUN)
        refs = [
            DatasetRef(dataset_type, {"instrument": instrument, "observation": observation}, run=INGEST_RUN)
            for observation in range(n_observations)
        ]
        butler.ingest(*[FileDataset(path=stub, refs=[ref]) for ref in refs], transfer="direct")
    finally:
        butler.close()
    return [(field, band) for field in fields for band in bands]


@dataclasses.dataclass
class CampaignReport:
    """How a campaign stands after a run of it."""

    output: str
    """The campaign's output collection."""
    chains: int
    """Chains of the campaign (every field and band of its data query)."""
    converged: list[dict[str, Any]]
    """Data IDs of the chains whose restored images are in the output collection."""
    failed: list[ChainOutcome]
    """Chains a quantum of which raised in this run; running the campaign again retries them alone."""
    ran: list[tuple]
    """Chains that had quanta to run in this run (all of them the first time; the failed ones in a retry)."""

    @property
    def remaining(self) -> int:
        """Chains neither converged nor failed."""
        return self.chains - len(self.converged) - len(self.failed)

    def describe(self) -> str:
        """One line: converged, failed, remaining, and where the images are."""
        return (
            f"{len(self.converged)} of {self.chains} chains converged, {len(self.failed)} failed, "
            f"{self.remaining} remaining; images in collection {self.output}."
        )


def campaign_chains(
    butler: Butler, dataset_type: str, *, collections: Sequence[str], where: str = ""
) -> list[dict[str, Any]]:
    """Data IDs (instrument, field, band) of the chains with a ``dataset_type`` in ``collections``."""
    with butler.query() as query:
        refs = list(query.datasets(dataset_type, collections=list(collections)).where(where or ""))
    data_ids = {
        tuple((name, ref.dataId[name]) for name in ("instrument", "field", "band", "channel_chunk")
              if name in ref.dataId.dimensions.names)
        for ref in refs
    }  # fmt: skip
    return [dict(chain) for chain in sorted(data_ids, key=str)]


def _all_chains(butler: Butler, inputs: Sequence[str], where: str) -> int:
    """Number of (field, band) chains with visibilities in ``inputs`` matching ``where``."""
    with butler.query() as query:
        query = query.join_dataset_search("visibilities", list(inputs)).where(where or "")
        return query.data_ids(["instrument", "field", "band"]).count(exact=True, discard=True)


def run_campaign(
    repo: str,
    *,
    pipeline_uri: str,
    output: str,
    inputs: Sequence[str] = (INGEST_RUN,),
    where: str = "",
    jobs: int = 1,
    config_overrides: Sequence[tuple[str, str, str]] = (),
    bps_submit: str | None = None,
    mock: MockRun | None = None,
    progress: Callable[[LoopProgress], None] | None = None,
) -> CampaignReport:
    """Image every chain of a data query with the CLEAN loop; retry only failed chains when run again.

    Parameters are those of `radio_clean.loop.CleanLoop`. A quantum that
    raises does not stop the campaign: its chain is reported as failed and
    the others go on; the report lists it, and running the same campaign
    again (same output collection, same settings) runs its quanta alone.

    Returns
    -------
    report : `CampaignReport`
        Chains converged, failed and remaining.
    """
    loop = CleanLoop(
        repo,
        pipeline_uri=pipeline_uri,
        inputs=inputs,
        output=output,
        where=where,
        jobs=jobs,
        config_overrides=config_overrides,
        bps_submit=bps_submit,
        mock=mock,
        progress=progress,
    )
    failed: list[ChainOutcome] = []
    try:
        loop.run()
    except LoopError as err:
        if not err.failed_chains:
            raise
        failed = err.failed_chains
    ran = sorted({chain for record in loop.steps for chain in record.chains}, key=str)
    with Butler.from_config(repo) as butler:
        total = _all_chains(butler, inputs, where)
        converged = campaign_chains(butler, loop.image_type, collections=[output], where=where)
    return CampaignReport(output=output, chains=total, converged=converged, failed=failed, ran=ran)
