"""Continuum bands: several frequency set-ups imaged into one MFS image, as tclean does.

Ingest makes one ``band`` per spectral-window set-up, and a run images one
field in one band per data ID. tclean's ``specmode='mfs'`` grids every
selected spectral window (of every MS) onto one image. For that,
`define_continuum_band` records a band that spans several: named by its
frequency range (``1400-1848MHz``), it holds in each MS the spectral windows
whose channels all lie in that range, and within it the tasks hand tclean's
``spw`` selection to CASA as given.
"""

from __future__ import annotations

__all__ = ["define_continuum_band", "is_continuum_band"]

from collections.abc import Sequence

from lsst.daf.butler import Butler

from .casa import continuum_band_holds, continuum_band_name, continuum_band_span


def is_continuum_band(name: str) -> bool:
    """Whether band ``name`` was made by `define_continuum_band` (not by ingest)."""
    return continuum_band_span(name) is not None


def define_continuum_band(
    butler: Butler, instrument: str, bands: Sequence[str], observations: Sequence[int]
) -> str:
    """Record the band spanning ``bands`` in ``observations``; return its name.

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        Writeable repository holding the ingested MeasurementSets.
    instrument : `str`
        Telescope of the bands.
    bands : `~collections.abc.Sequence` [`str`]
        Names of ingested bands (set-ups) to image together.
    observations : `~collections.abc.Sequence` [`int`]
        The observations (MeasurementSets) to give the band.

    Returns
    -------
    name : `str`
        The band's name. The band depends only on the frequency range, so
        defining it again, from any bands with the same range, changes nothing.
    """
    registry = butler.registry
    setups = {
        record.name: record
        for record in registry.queryDimensionRecords("band", instrument=instrument)
        if not is_continuum_band(record.name)
    }
    name = continuum_band_name(
        min(setups[band].freq_min for band in bands), max(setups[band].freq_max for band in bands)
    )
    freq_min, freq_max = continuum_band_span(name)
    within = {
        band for band, setup in setups.items() if continuum_band_holds(name, setup.freq_min, setup.freq_max)
    }
    registry.syncDimensionData(
        "band",
        {
            "instrument": instrument,
            "name": name,
            "freq_min": freq_min,
            "freq_max": freq_max,
            # Channels and their width belong to one set-up; a span of several has neither.
            "n_chan": 0,
            "chan_width": 0.0,
            "freq_frame": setups[bands[0]].freq_frame,
        },
    )
    for observation in observations:
        spw_ids = sorted(
            int(spw)
            for row in registry.queryDimensionRecords(
                "observation_band", instrument=instrument, observation=observation
            )
            if row.band in within
            for spw in row.spw_ids.split(",")
            if spw
        )
        if spw_ids:
            registry.syncDimensionData(
                "observation_band",
                {
                    "instrument": instrument,
                    "observation": observation,
                    "band": name,
                    "spw_ids": ",".join(map(str, spw_ids)),
                },
            )
    return name
