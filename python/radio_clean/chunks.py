"""Channel chunks: how a spectral cube is cut into independent pieces of work.

A cube pipeline (``pipelines/CubeImaging.yaml``) runs every task once per
``channel_chunk`` data ID, so the chunks of a cube are imaged in parallel, each
with its own PSF, cycles, iteration control and restoration (as CASA's own
parallel cube imaging does). A chunk is a record of the ``channel_chunk``
dimension: a range of output channels of one band's cube.
"""

from __future__ import annotations

__all__ = [
    "ChunkError",
    "chunk_ranges",
    "define_channel_chunks",
    "output_channel_count",
    "read_channels",
]

import math
import re
from collections.abc import Mapping, Sequence

from lsst.daf.butler import Butler

from .image import RadioImage
from .parameters import CleanParametersConfig, ParameterError, selected_channels
from .tasks.naming import CHUNK_DATASET_PREFIX


class ChunkError(ValueError):
    """Channel chunks cannot be defined or read as asked; the message says why."""


def output_channel_count(parameters: CleanParametersConfig, band_n_chan: int) -> int:
    """Return how many channels the cube of these parameters has, as tclean decides it.

    With ``nchan=-1`` tclean makes, for a channel ``width`` (default 1): from
    an empty ``start``, the data channels that ``spw`` spans (first to last
    selected, gaps included) divided by ``width``; from a channel-number
    ``start`` (a data channel, not one counted from the selection), the
    data channels from ``start`` to the end of the window divided by
    ``width`` (CASA 6.7.5, measured on NGC5921).

    Parameters
    ----------
    parameters : `CleanParametersConfig`
        tclean parameters (``nchan``, ``start``, ``width``, ``spw``).
    band_n_chan : `int`
        Channels of the band in the MS.

    Raises
    ------
    ChunkError
        If ``nchan`` is -1 and the count depends on frequencies or velocities,
        or the selected channels are not given as channel numbers.
    """
    if parameters.nchan != -1:
        return parameters.nchan
    start, width = parameters.start.strip(), parameters.width.strip() or "1"
    if not re.fullmatch(r"\d+", width) or not re.fullmatch(r"\d*", start):
        raise ChunkError(
            f"With start={parameters.start!r} and width={parameters.width!r} the number of channels is not "
            "known before imaging; set nchan as well."
        )
    if start:
        return max(0, (band_n_chan - int(start)) // int(width))
    try:
        selected = selected_channels(parameters.spw)
    except ParameterError as err:
        raise ChunkError(str(err)) from None
    first, last = selected or (0, band_n_chan - 1)
    return max(0, (min(last, band_n_chan - 1) - first + 1) // int(width))


def chunk_ranges(n_chan: int, chunk_channels: int) -> list[tuple[int, int]]:
    """Cut ``n_chan`` channels into (start, stop) ranges of at most ``chunk_channels``, balanced."""
    if n_chan < 1 or chunk_channels < 1:
        raise ChunkError(f"Cannot cut {n_chan} channels into chunks of {chunk_channels}.")
    count = math.ceil(n_chan / chunk_channels)
    bounds = [round(i * n_chan / count) for i in range(count + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def define_channel_chunks(
    butler: Butler, *, instrument: str, band: str, ranges: Sequence[tuple[int, int]]
) -> list[int]:
    """Make sure ``channel_chunk`` records exist for these channel ranges of a band.

    Records with the same range are reused, so defining the same chunks again
    changes nothing.

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        Writeable Butler.
    instrument, band : `str`
        The band the chunks belong to.
    ranges : `~collections.abc.Sequence` [`tuple` [`int`, `int`]]
        Output channel ranges (start, stop).

    Returns
    -------
    ids : `list` [`int`]
        ``channel_chunk`` ids of the ranges, in order.
    """
    existing = {
        (record.chan_start, record.chan_stop): record.id
        for record in butler.registry.queryDimensionRecords("channel_chunk", instrument=instrument, band=band)
    }
    next_id = max(existing.values(), default=-1) + 1
    ids = []
    for chan_start, chan_stop in ranges:
        if (chan_start, chan_stop) not in existing:
            butler.registry.insertDimensionData(
                "channel_chunk",
                dict(
                    instrument=instrument, band=band, id=next_id, chan_start=chan_start, chan_stop=chan_stop
                ),
            )
            existing[chan_start, chan_stop] = next_id
            next_id += 1
        ids.append(existing[chan_start, chan_stop])
    return ids


def read_channels(
    butler: Butler, dataset_type: str, data_id: Mapping[str, str], start: int, stop: int
) -> RadioImage:
    """Read output channels ``start`` to ``stop - 1`` of a chunked cube image.

    Only the chunks that hold those channels are opened, and of each only the
    planes asked for are read.

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        Butler whose default collections hold the cube pipeline's outputs.
    dataset_type : `str`
        Image name without the chunk prefix: ``image``, ``psf``,
        ``residual_c3``...
    data_id : `~collections.abc.Mapping`
        ``instrument``, ``field`` and ``band``.
    start, stop : `int`
        Channel range of the whole cube.

    Returns
    -------
    image : `RadioImage`
        The channels, with their coordinates and beams.
    """
    name = CHUNK_DATASET_PREFIX + dataset_type
    refs = sorted(
        butler.query_datasets(name, data_id=data_id, with_dimension_records=True, explain=False),
        key=lambda ref: ref.dataId.records["channel_chunk"].chan_start,
    )
    pieces = []
    for ref in refs:
        record = ref.dataId.records["channel_chunk"]
        low, high = max(start, record.chan_start), min(stop, record.chan_stop)
        if low < high:
            channels = (low - record.chan_start, high - record.chan_start)
            pieces.append(butler.get(ref, parameters={"channels": channels}))
    covered = sum(piece.n_chan for piece in pieces)
    if covered != stop - start:
        raise ChunkError(
            f"Channels {start}~{stop - 1} of {name} for {dict(data_id)} are not all in the repository "
            f"({covered} of {stop - start} found)."
        )
    return RadioImage.concatenate_channels(pieces)
