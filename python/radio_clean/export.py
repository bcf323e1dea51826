"""Export CLEAN products from a repository as FITS files with CASA's names.

Every exported FITS file carries, besides what the repository's file has,
the cards only the registry can give (see `radio_clean.fits_cards`): the
observer, and a ``HISTORY`` record of software versions, tclean parameters,
input MeasurementSets with their fingerprints, repository, collection, RUN
and dataset id, so that a file copied out alone says how it was made.
"""

from __future__ import annotations

__all__ = [
    "ExportError",
    "export_cube_products",
    "export_products",
    "export_run",
    "exported_names",
    "last_minor_cycle",
    "run_parameters",
    "summary_line",
]

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from astropy.io import fits
from lsst.daf.butler import Butler, DatasetRef, DimensionRecord

from .fits_cards import date_card, history_cards, observation_cards
from .image import RadioImage
from .image_fits import read_fits_provenance, write_fits_from_channel_pieces
from .parameters import CleanParametersConfig
from .pipeline import LAYOUTS, label_of
from .quicklook import image_figure
from .repo import open_repo
from .tasks.naming import CHUNK_DATASET_PREFIX


class ExportError(RuntimeError):
    """A collection cannot be exported; the message says why and what to do."""


def run_parameters(butler: Butler, collection: str) -> CleanParametersConfig:
    """Return the tclean parameters a finished CLEAN run in ``collection`` was made with.

    They are those of its restore task's config, as the run stored it.

    Raises
    ------
    ExportError
        If the collection does not exist or holds no restored images.
    """
    from lsst.daf.butler import MissingCollectionError, MissingDatasetTypeError

    try:
        butler.collections.get_info(collection)
    except MissingCollectionError:
        raise ExportError(f"There is no collection {collection} in this repository.") from None
    for config_type in dict.fromkeys(f"{label_of('restore', layout)}_config" for layout in LAYOUTS):
        try:
            refs = butler.query_datasets(config_type, collections=collection, explain=False)
        except MissingDatasetTypeError:  # no run of that layout in this repository
            continue
        if refs:
            return butler.get(refs[0]).parameters
    raise ExportError(
        f"Collection {collection} holds no restored images (no restore task ran in it); give the output "
        "collection of a finished run (radio-clean image, radio-clean clean, pipetask or bps)."
    )


def summary_line(summary: Mapping[str, Any]) -> str:
    """How one exported field and band ended, and where its files are (a ``summary.json`` of `export_run`)."""
    return (
        f"{summary['field']} in {summary['band']}: {summary['stop_reason']} after {summary['iterdone']} "
        f"iterations and {summary['nmajordone']} major cycles; FITS and PNG files in {summary['directory']}."
    )


def export_run(
    repo: str, collection: str, parameters: CleanParametersConfig | None, export_dir: str
) -> list[dict[str, Any]]:
    """Export every field and band restored in ``collection``, one directory each if there are several.

    Parameters
    ----------
    repo : `str`
        Repository.
    collection : `str`
        Output collection of a finished run.
    parameters : `CleanParametersConfig` or `None`
        The run's tclean parameters; `None` reads them from the run.
    export_dir : `str`
        Where the files go (``FIELD_BAND`` sub-directories if more than one).

    Returns
    -------
    summaries : `list` [`dict`]
        ``summary.json`` of each field and band, with its ``directory``.
    """
    with open_repo(repo, collections=collection) as butler:
        if parameters is None:
            parameters = run_parameters(butler, collection)
        cube = parameters.specmode in ("cube", "cubedata")
        summary_type = CHUNK_DATASET_PREFIX + "clean_summary" if cube else "clean_summary"
        export = export_cube_products if cube else export_products
        refs = butler.query_datasets(summary_type, collections=collection, explain=False)
        data_ids = [
            dict(instrument=r.dataId["instrument"], field=r.dataId["field"], band=r.dataId["band"])
            for r in refs
        ]
        data_ids = list({tuple(data_id.items()): data_id for data_id in data_ids}.values())
        summaries = []
        for data_id in data_ids:
            directory = (
                export_dir
                if len(data_ids) == 1
                else os.path.join(export_dir, f"{data_id['field']}_{data_id['band']}")
            )
            summaries.append({**export(butler, data_id, parameters, directory), "directory": directory})
    return summaries


def last_minor_cycle(summary: dict[str, Any]) -> int:
    """Return the cycle whose minor cycle ran last; its mask is the one tclean leaves on disk.

    When tclean stops it puts back the mask the last minor cycle used, not one
    made after it.
    """
    return max(1, int(summary["nmajordone"]) - 1)


def exported_names(parameters: CleanParametersConfig, final_cycle: int, mask_cycle: int) -> dict[str, str]:
    """Map FITS file names (as CASA's exportfits users know them) to dataset type names.

    ``final_cycle`` is the cycle whose convergence check stopped CLEAN: its
    model is the final one, and the residual is that of the major cycle
    before it. ``mask_cycle`` is the cycle of the last minor cycle: when
    tclean stops it leaves the mask that minor cycle used, not one made
    after it.
    """
    final, last_major = f"c{final_cycle}", f"c{final_cycle - 1}"
    if parameters.deconvolver != "mtmfs":
        names = {
            "image.fits": "image",
            "residual.fits": f"residual_{last_major}",
            "model.fits": f"model_{final}",
            "psf.fits": "psf",
            "pb.fits": "pb",
            "mask.fits": f"mask_c{mask_cycle}",
            "sumwt.fits": "sumwt",
        }
        if parameters.pbcor:
            names["image.pbcor.fits"] = "image_pbcor"
        return names
    names = {"pb.tt0.fits": "pb", "mask.fits": f"mask_c{mask_cycle}"}
    if parameters.makes_spectral_index:
        names |= {"alpha.fits": "alpha", "alpha.error.fits": "alpha_error"}
    for term in range(parameters.nterms):
        suffix = f"_tt{term}" if term else ""
        names[f"image.tt{term}.fits"] = f"image{suffix}"
        names[f"residual.tt{term}.fits"] = f"residual{suffix}_{last_major}"
        names[f"model.tt{term}.fits"] = f"model{suffix}_{final}"
    for term in range(2 * parameters.nterms - 1):
        suffix = f"_tt{term}" if term else ""
        names[f"psf.tt{term}.fits"] = f"psf{suffix}"
        names[f"sumwt.tt{term}.fits"] = f"sumwt{suffix}"
    if parameters.pbcor:
        names["image.tt0.pbcor.fits"] = "image_pbcor"
    return names


def export_products(
    butler: Butler, data_id: dict[str, str], parameters: CleanParametersConfig, directory: str
) -> dict[str, Any]:
    """Write one field/band's images, quick looks and ``summary.json`` into ``directory``.

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        Butler whose default collections hold the pipeline's outputs.
    data_id : `dict`
        ``instrument``, ``field`` and ``band``.
    parameters : `CleanParametersConfig`
        The parameters the pipeline ran with (they decide which images exist).
    directory : `str`
        Output directory (created if needed).

    Returns
    -------
    summary : `dict`
        What ``summary.json`` holds: iterdone, nmajordone, stopcode, stop
        reason, the peak residual after each major cycle, and the files.
    """
    os.makedirs(directory, exist_ok=True)
    clean_summary = butler.get("clean_summary", data_id)
    final_cycle = int(clean_summary["cycle"])
    files = []
    mask_cycle = min(final_cycle, last_minor_cycle(clean_summary))
    observations = _input_observations(butler, [butler.find_dataset("image", data_id)])
    for file_name, dataset_type in exported_names(parameters, final_cycle, mask_cycle).items():
        ref = butler.find_dataset(dataset_type, data_id)
        image = butler.get(ref)
        cards = _header_cards(butler, image, data_id, parameters, observations, [ref])
        image.to_fits(os.path.join(directory, file_name), overwrite=True, header_cards=cards)
        files.append(file_name)
    for file_name, dataset_type in (("image.png", "image_png"), ("convergence.png", "convergence_png")):
        shutil.copyfile(butler.getURI(dataset_type, data_id).ospath, os.path.join(directory, file_name))
        files.append(file_name)
    peaks = clean_summary["peak_residual_after_major_cycle"]
    summary = {
        "field": data_id["field"],
        "band": data_id["band"],
        "iterdone": int(clean_summary["iterdone"]),
        "nmajordone": int(clean_summary["nmajordone"]),
        "stopcode": int(clean_summary["stopcode"]),
        "stop_reason": clean_summary["stop_reason"],
        "converged": bool(clean_summary["converged"]),
        "peak_residual_after_major_cycle": peaks,
        "files": files,
    }
    with open(os.path.join(directory, "summary.json"), "w") as stream:
        json.dump(summary, stream, indent=2)
    return summary


def export_cube_products(
    butler: Butler, data_id: dict[str, str], parameters: CleanParametersConfig, directory: str
) -> dict[str, Any]:
    """Write one field/band's chunked cube as single FITS cubes, quick looks and ``summary.json``.

    Each chunk's image is read once and written into place in the cube file,
    so no more than one chunk is in memory at a time.

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        Butler whose default collections hold the cube pipeline's outputs.
    data_id : `dict`
        ``instrument``, ``field`` and ``band``.
    parameters : `CleanParametersConfig`
        The parameters the pipeline ran with.
    directory : `str`
        Output directory (created if needed).

    Returns
    -------
    summary : `dict`
        What ``summary.json`` holds: totals over the chunks and, per chunk,
        its channels, iterdone, nmajordone, stop code and reason.
    """
    os.makedirs(directory, exist_ok=True)
    refs = butler.query_datasets(
        CHUNK_DATASET_PREFIX + "clean_summary", data_id=data_id, with_dimension_records=True, explain=False
    )
    chunks = sorted(
        ((ref.dataId, ref.dataId.records["channel_chunk"], butler.get(ref)) for ref in refs),
        key=lambda chunk: chunk[1].chan_start,
    )
    n_chan = sum(record.chan_stop - record.chan_start for _, record, _ in chunks)
    names = [
        exported_names(
            parameters, int(summary["cycle"]), min(int(summary["cycle"]), last_minor_cycle(summary))
        )
        for _, _, summary in chunks
    ]
    files = []
    peak_map: list[RadioImage] = []
    observations = _input_observations(
        butler, [butler.find_dataset(CHUNK_DATASET_PREFIX + "image", chunk_id) for chunk_id, _, _ in chunks]
    )
    for file_name in names[0]:
        refs = [
            butler.find_dataset(CHUNK_DATASET_PREFIX + chunk_names[file_name], chunk_id)
            for (chunk_id, _, _), chunk_names in zip(chunks, names, strict=True)
        ]
        # The cards are made from the first channel (the cube's WCS, one channel high).
        first = butler.get(refs[0], parameters={"channels": (0, 1)})
        cards = _header_cards(butler, first, data_id, parameters, observations, refs)
        pieces = (butler.get(ref) for ref in refs)
        if file_name == "image.fits":
            pieces = _peak_over_channels(pieces, peak_map)
        write_fits_from_channel_pieces(os.path.join(directory, file_name), pieces, n_chan, header_cards=cards)
        files.append(file_name)
    title = f"{data_id['field']} {data_id['band']} restored, peak over {n_chan} channels"
    image_figure(peak_map[0], title=title).savefig(os.path.join(directory, "image.png"))
    files.append("image.png")
    for chunk_id, record, _ in chunks:
        file_name = f"convergence_chunk{record.id}.png"
        uri = butler.getURI(CHUNK_DATASET_PREFIX + "convergence_png", chunk_id)
        shutil.copyfile(uri.ospath, os.path.join(directory, file_name))
        files.append(file_name)
    per_chunk = [
        {
            "channel_chunk": record.id,
            "channels": [record.chan_start, record.chan_stop - 1],
            "iterdone": int(summary["iterdone"]),
            "nmajordone": int(summary["nmajordone"]),
            "stopcode": int(summary["stopcode"]),
            "stop_reason": summary["stop_reason"],
            "converged": bool(summary["converged"]),
        }
        for _, record, summary in chunks
    ]
    # The chunks ran as separate tclean runs; the run's stop code is that of the chunk that took
    # the most major cycles (the one that decided when the cube was done).
    longest = max(per_chunk, key=lambda chunk: (chunk["nmajordone"], chunk["iterdone"]))
    summary = {
        "field": data_id["field"],
        "band": data_id["band"],
        "iterdone": sum(chunk["iterdone"] for chunk in per_chunk),
        "nmajordone": longest["nmajordone"],
        "stopcode": longest["stopcode"],
        "stop_reason": "; ".join(sorted({chunk["stop_reason"] for chunk in per_chunk})),
        "converged": all(chunk["converged"] for chunk in per_chunk),
        "channel_chunks": per_chunk,
        "files": files,
    }
    with open(os.path.join(directory, "summary.json"), "w") as stream:
        json.dump(summary, stream, indent=2)
    return summary


def _input_observations(butler: Butler, refs: Sequence[DatasetRef | None]) -> list[DimensionRecord]:
    """The ``observation`` records of the MeasurementSets the restored images were made from.

    They are read from the images' own provenance (the ``visibilities``
    datasets their Restore quanta read), so they are exactly the inputs of
    this run, whatever else the repository holds.
    """
    ids = set()
    for ref in refs:
        if ref is None:
            continue
        provenance = read_fits_provenance(butler.getURI(ref).ospath)
        for key, value in provenance.items():
            if (
                key.startswith("LSST.BUTLER.INPUT.")
                and key.endswith(".DATASETTYPE")
                and value == "visibilities"
            ):
                ids.add(str(provenance[key.removesuffix("DATASETTYPE") + "ID"]))
    records = {}
    for dataset_id in ids:
        visibilities = butler.get_dataset(dataset_id, dimension_records=True)
        if visibilities is not None:
            record = visibilities.dataId.records["observation"]
            records[record.id] = record
    return [records[key] for key in sorted(records)]


def _header_cards(
    butler: Butler,
    image: RadioImage,
    data_id: Mapping[str, Any],
    parameters: CleanParametersConfig,
    observations: Sequence[DimensionRecord],
    refs: Sequence[DatasetRef],
) -> list[fits.Card]:
    """What an exported file says besides the image: exportfits's cards and how it was made."""
    observers = list(dict.fromkeys(record.observer for record in observations if record.observer))
    cards = list(
        observation_cards(
            image.wcs,
            telescope=str(data_id["instrument"]),
            object_name=str(data_id["field"]),
            observer=", ".join(observers) if observers else None,
            veltype=parameters.veltype,
        )
    )
    cards.append(date_card())
    roots = [root for root in butler.get_datastore_roots().values() if root is not None]
    cards.extend(
        history_cards(
            tclean_parameters=parameters.to_tclean(),
            measurement_sets=[(record.ms_path, record.fingerprint) for record in observations],
            repository=os.path.normpath(roots[0].ospath) if roots else str(butler),
            collection=", ".join(butler.collections.defaults),
            datasets=[(ref.datasetType.name, str(ref.id), ref.run, ref.dataId.mapping) for ref in refs],
        )
    )
    return cards


def _peak_over_channels(pieces, peak_map: list[RadioImage]):
    """Pass the pieces on, leaving in ``peak_map`` the brightest value of each pixel over all channels."""
    for piece in pieces:
        peak = np.nanmax(piece.pixels, axis=1, keepdims=True)
        if peak_map:
            peak = np.fmax(peak_map[0].pixels, peak)
        peak_map[:] = [piece.channel_slice(0, 1).replace(pixels=peak, restoring_beam=None, provenance={})]
        yield piece
