"""FITS header cards of radio_clean's products besides pixels, coordinates and beam.

Two kinds of cards, both made here so that the files in the repository and
the exported ones say the same thing:

* what CASA's ``exportfits`` writes of a tclean image, with the same values
  where the meaning is the same: ``BTYPE``, ``OBJECT``, ``TELESCOP``,
  ``INSTRUME``, ``OBSERVER``, ``OBSRA``/``OBSDEC``, ``VELREF`` with
  ``ALTRVAL``/``ALTRPIX``, ``DATE`` (`observation_cards`, `date_card`);
* ``HISTORY`` saying how the product was made, which no other imager can
  say: software versions, every tclean parameter as used, the input
  MeasurementSets and their fingerprints, the Butler repository, collection,
  RUN and dataset id (`history_cards`).

The Butler formatter adds to every image it writes the cards its data ID
gives (all of the first kind but ``OBSERVER`` and ``DATE``); ``OBSERVER``
and the ``HISTORY`` record need the registry, and are added with ``DATE``
when products are exported.
"""

from __future__ import annotations

__all__ = ["date_card", "history_cards", "observation_cards", "software_versions"]

import datetime
import functools
import importlib.metadata
import math
from collections.abc import Mapping, Sequence
from typing import Any

from astropy.io import fits
from astropy.wcs import WCS

from .version import __version__

_SPEED_OF_LIGHT = 299792458.0  # m/s

# casacore's VELREF codes of each FITS SPECSYS (AIPS convention, casacore's own 4-7); +256 radio.
_VELREF_FROM_SPECSYS = {
    "LSRK": 1,
    "BARYCENT": 2,
    "TOPOCENT": 3,
    "LSRD": 4,
    "GEOCENTR": 5,
    "SOURCE": 6,
    "GALACTOC": 7,
}
_RADIO_VELREF = 256
_MAX_STRING = 68  # longest FITS string value on one card (longer ones need CONTINUE cards)


@functools.cache
def software_versions() -> dict[str, str]:
    """Return the versions of radio_clean and of the CASA packages that do the imaging.

    Returns
    -------
    versions : `dict` [`str`, `str`]
        ``radio_clean``, ``casatools`` and ``casatasks`` (``"not installed"``
        for a package that is missing).
    """
    versions = {"radio_clean": __version__}
    for package in ("casatools", "casatasks"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def origin() -> str:
    """Return the ``ORIGIN`` value: the software that wrote the file, with versions."""
    versions = software_versions()
    return f"radio_clean {versions['radio_clean']} casatools {versions['casatools']}"


def _text(value: str) -> str:
    """A string value that fits on one card."""
    return value[:_MAX_STRING]


@functools.lru_cache(maxsize=256)
def _observation_cards(
    telescope: str,
    object_name: str,
    observer: str | None,
    veltype: str,
    celestial: tuple[str, float, float],
    spectral: tuple[str, float, float, float],
) -> tuple[fits.Card, ...]:
    lon_type, crval1, crval2 = celestial
    specsys, crval3, crpix3, restfrq = spectral
    cards = [
        fits.Card("BTYPE", "Intensity"),
        fits.Card("OBJECT", _text(object_name)),
        fits.Card("TELESCOP", _text(telescope)),
        fits.Card("INSTRUME", _text(telescope)),
    ]
    if observer is not None:
        cards.append(fits.Card("OBSERVER", _text(observer)))
    if lon_type == "RA":
        cards.append(fits.Card("OBSRA", crval1, "[deg] Phase centre right ascension"))
        cards.append(fits.Card("OBSDEC", crval2, "[deg] Phase centre declination"))
    radio = veltype in ("radio", "")  # tclean reads veltype='' as radio
    if restfrq > 0:
        if radio:
            velocity = _SPEED_OF_LIGHT * (1.0 - crval3 / restfrq)
        else:
            velocity = _SPEED_OF_LIGHT * (restfrq / crval3 - 1.0)
        cards.append(fits.Card("ALTRVAL", velocity, "Alternate frequency reference value"))
        cards.append(fits.Card("ALTRPIX", crpix3, "Alternate frequency reference pixel"))
    if specsys in _VELREF_FROM_SPECSYS:
        velref = _VELREF_FROM_SPECSYS[specsys] + (_RADIO_VELREF if radio else 0)
        cards.append(fits.Card("VELREF", velref, "1 LSR, 2 HEL, 3 OBS, +256 Radio"))
        cards.append(fits.Card("COMMENT", "casacore non-standard usage: 4 LSD, 5 GEO, 6 SOU, 7 GAL"))
    return tuple(cards)


def observation_cards(
    wcs: WCS,
    *,
    telescope: str,
    object_name: str,
    observer: str | None = None,
    veltype: str = "radio",
) -> tuple[fits.Card, ...]:
    """Return the cards exportfits writes about what a tclean image shows.

    Parameters
    ----------
    wcs : `astropy.wcs.WCS`
        The image's coordinates (lon, lat, FREQ, STOKES).
    telescope : `str`
        The telescope (``TELESCOP`` and, as CASA writes it, ``INSTRUME``).
    object_name : `str`
        The field imaged (``OBJECT``).
    observer : `str`, optional
        The observer named in the MeasurementSet (``OBSERVER``).
    veltype : `str`, optional
        tclean's ``veltype``: ``radio`` (or ``''``, which tclean reads as
        radio) adds 256 to ``VELREF`` and gives the radio velocity in
        ``ALTRVAL``; any other is written as optical.

    Returns
    -------
    cards : `tuple` [`astropy.io.fits.Card`]
        ``BTYPE``, ``OBJECT``, ``TELESCOP``, ``INSTRUME``, ``OBSERVER`` (if
        known), ``OBSRA``/``OBSDEC`` (the phase centre, for RA/DEC images),
        ``ALTRVAL``/``ALTRPIX`` (the velocity at the reference channel, if
        there is a rest frequency) and ``VELREF`` (the spectral frame).
    """
    parameters = wcs.wcs
    celestial = (parameters.ctype[0].split("-")[0], float(parameters.crval[0]), float(parameters.crval[1]))
    restfrq = float(parameters.restfrq)
    spectral = (
        parameters.specsys,
        float(parameters.crval[2]),
        float(parameters.crpix[2]),
        restfrq if math.isfinite(restfrq) else 0.0,
    )
    return _observation_cards(telescope, object_name, observer, veltype, celestial, spectral)


def date_card(now: datetime.datetime | None = None) -> fits.Card:
    """Return ``DATE``, when the file was written (UTC, microseconds, as CASA writes it)."""
    now = now or datetime.datetime.now(datetime.UTC)
    # The card image is written out here: astropy takes ~60 microseconds to format it, once per file written.
    value = f"'{now:%Y-%m-%dT%H:%M:%S.%f}'"
    return fits.Card.fromstring(f"{'DATE':<8}= {value:<20} / Date FITS file was written".ljust(80))


def _tclean_value(value: Any) -> str:
    """A parameter value as tclean's own HISTORY shows it (strings in double quotes)."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_tclean_value(item) for item in value) + "]"
    return repr(value)


def history_cards(
    *,
    tclean_parameters: Mapping[str, Any],
    measurement_sets: Sequence[tuple[str, str]],
    repository: str,
    collection: str,
    datasets: Sequence[tuple[str, str, str, Mapping[str, Any]]],
) -> list[fits.Card]:
    """Return ``HISTORY`` cards saying how a product was made.

    Parameters
    ----------
    tclean_parameters : `~collections.abc.Mapping`
        tclean's keyword arguments as the tasks used them (without ``vis``
        and ``field``, which are added from ``measurement_sets`` and
        ``data_id``).
    measurement_sets : `~collections.abc.Sequence` [`tuple` [`str`, `str`]]
        Path and fingerprint of each input MeasurementSet.
    repository : `str`
        The Butler repository.
    collection : `str`
        The output collection the products were exported from.
    datasets : `~collections.abc.Sequence` [`tuple`]
        The datasets the file holds (one, or a cube's channel chunks), each
        as dataset type, id, RUN collection and data ID; the first data ID
        names the field.

    Returns
    -------
    cards : `list` [`astropy.io.fits.Card`]
        One card per line; a line longer than a card goes on over the next.
    """
    versions = software_versions()
    lines = [
        "radio_clean START PROVENANCE",
        f"radio_clean {versions['radio_clean']}: tclean's CLEAN as Butler PipelineTasks",
        f"casatools {versions['casatools']}, casatasks {versions['casatasks']}",
        f"Butler repository: {repository}",
        f"Collection: {collection}",
    ]
    for dataset_type, dataset_id, run, data_id in datasets:
        lines.append(f"Dataset: {dataset_type}, RUN {run}")
        lines.append(f"Dataset id: {dataset_id}")
        lines.append("Data ID: " + ", ".join(f"{key}={value}" for key, value in data_id.items()))
    for number, (path, fingerprint) in enumerate(measurement_sets, start=1):
        lines.append(f"Input MS {number}: {path}")
        lines.append(f"Input MS {number} fingerprint (SHA-256):")
        lines.append(fingerprint)
    lines.append("tclean parameters as used:")
    used = {
        "vis": [path for path, _ in measurement_sets],
        "field": str(datasets[0][3].get("field", "")) if datasets else "",
        **tclean_parameters,
    }
    lines.extend(f"{name:<11} = {_tclean_value(value)}" for name, value in used.items())
    lines.append("radio_clean END PROVENANCE")
    return [fits.Card("HISTORY", line) for line in lines]
