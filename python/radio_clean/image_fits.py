"""The FITS layout of a `RadioImage`: writing, reading and streaming a cube from channel pieces.

A `RadioImage` is a cube of float32 pixels with axes (Stokes, channel, y, x)
in numpy order, which is the numpy order of a FITS file whose axes are RA,
DEC, FREQ, STOKES (CASA's ``exportfits`` with its default ``stokeslast=True``).
Its world coordinates are a four-axis `astropy.wcs.WCS` in FITS axis order.

On disk (`radio_clean.formatters.RadioImageFitsFormatter`) an image is one FITS file:

* primary HDU: the pixels (BITPIX -32) and a header with the WCS written at
  full double precision, ``BUNIT`` and, for a single restoring beam,
  ``BMAJ``/``BMIN``/``BPA`` in degrees, ``ORIGIN`` with the software versions,
  then any cards the writer is given (``OBJECT``, ``TELESCOP``, ``HISTORY``,
  ... from `radio_clean.fits_cards`), which reading ignores;
* ``BEAMS`` binary table (only for per-plane beams), laid out exactly as CASA
  writes it (``CASAMBM = T`` in the primary header, columns BMAJ, BMIN
  [arcsec], BPA [deg] as float32 and CHAN, POL as int32, ``NCHAN``/``NPOL`` in
  its header), so that CASA's ``importfits`` reads the per-plane beams;
* ``PROVENANCE`` binary table (only if there is provenance): one row per
  entry, columns KEY and VALUE, the value JSON-encoded so that its type
  (str, int, float, bool) survives exactly. CASA ignores this table; it must
  come after ``BEAMS`` (CASA's reader aborts the process otherwise).

Every task reads and writes several images, so this I/O is kept cheap: the
file is written byte for byte as astropy would write it but without astropy
HDUs, and read back with plain reads (only the requested channels), falling
back to astropy for any file not in this layout. WCSs, which take about a
millisecond of Python to build from a header, are built once per distinct
header and copied.
"""

from __future__ import annotations

__all__ = ["read_fits", "read_fits_provenance", "write_fits", "write_fits_from_channel_pieces"]

import functools
import json
import math
import os
import re
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import astuple
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from .fits_cards import origin
from .image import (
    _ARCSEC_PER_DEG,
    _WCS_HEADER_FLAGS,
    _WCS_HEADER_TEXT,
    Beam,
    PlaneBeams,
    ProvenanceValue,
    RadioImage,
    RestoringBeam,
    _beam_for_channels,
    _BeamsOf,
    _channel_range,
    _check_next_channels,
    _joined_beams,
    _Memo,
    _wcs_for_channels,
    _wcs_key,
)

# A card in the primary header saying which layout of this file the reader is looking at.
_LAYOUT_KEYWORD = "RCLAYOUT"
_LAYOUT_VERSION = 1
_BEAMS_EXTNAME = "BEAMS"
_PROVENANCE_EXTNAME = "PROVENANCE"
_FITS_BLOCK = 2880
_FILE_WCS = _Memo(128)


def write_fits_from_channel_pieces(
    path: str, pieces: Iterable[RadioImage], n_chan: int, *, header_cards: Sequence[fits.Card] = ()
) -> None:
    """Write a cube FITS file from consecutive channel ranges, holding one range in memory at a time.

    The file is what `RadioImage.concatenate_channels` followed by
    `RadioImage.to_fits` would write (without provenance), but each piece is
    written into place as it comes and then dropped, so a cube larger than
    memory can be assembled from its chunks.

    Parameters
    ----------
    path : `str`
        File to write (replaced if it exists).
    pieces : `~collections.abc.Iterable` [`RadioImage`]
        Images of consecutive channels, in order; read one at a time.
    n_chan : `int`
        Channels of the whole cube (the sum over the pieces).
    header_cards : `~collections.abc.Sequence` [`astropy.io.fits.Card`], optional
        Cards added to the primary header, as in `RadioImage.to_fits`.
    """
    first: RadioImage | None = None
    beam_pieces = []  # the pieces' beams only (as one-plane-high images are not needed)
    offset = 0
    hdus = None
    try:
        for piece in pieces:
            if first is None:
                first = piece.channel_slice(0, 1).replace(pixels=piece.pixels[:, :1].copy(), provenance={})
                header = _image_to_hdus(first.replace(restoring_beam=None), header_cards)[0].header
                header["NAXIS3"] = n_chan
                if piece.restoring_beam is not None:
                    header["CASAMBM"] = (True, "CASA multiple BEAMS table present")
                _allocate_fits(path, header)
                hdus = fits.open(path, mode="update", memmap=True)
            _check_next_channels(first, piece, offset)
            if offset + piece.n_chan > n_chan:
                raise ValueError(f"The pieces have more than the {n_chan} channels declared.")
            hdus[0].data[:, offset : offset + piece.n_chan] = piece.pixels
            beam_pieces.append(_BeamsOf(piece.restoring_beam, piece.n_chan, piece.n_stokes))
            offset += piece.n_chan
    finally:
        if hdus is not None:
            hdus.close()
    if offset != n_chan:
        raise ValueError(f"The pieces have {offset} channels, not the {n_chan} declared.")
    beams = _joined_beams(beam_pieces)
    if beams is not None:
        if isinstance(beams, Beam):
            beams = PlaneBeams(*(np.full((n_chan, first.n_stokes), value) for value in astuple(beams)))
        with fits.open(path, mode="append") as hdu_list:
            hdu_list.append(_beams_table(beams))


def _allocate_fits(path: str, header: fits.Header) -> None:
    """Write ``header`` and zeroed room for its data, without making the data in memory."""
    axes = [header[f"NAXIS{axis}"] for axis in range(1, header["NAXIS"] + 1)]
    n_bytes = abs(header["BITPIX"]) // 8 * math.prod(axes)
    with open(path, "wb") as stream:
        stream.write(header.tostring().encode("ascii"))
        stream.truncate(stream.tell() + math.ceil(n_bytes / _FITS_BLOCK) * _FITS_BLOCK)


def _degrees_reading_back_as(arcsec: float) -> float:
    """Return a degree value that, multiplied by 3600 on reading, gives ``arcsec`` exactly.

    ``arcsec / 3600 * 3600`` is not always ``arcsec`` in floating point; one of
    the few neighbouring doubles of ``arcsec / 3600`` is.
    """
    degrees = arcsec / _ARCSEC_PER_DEG
    for direction in (math.inf, -math.inf):
        candidate = degrees
        for _ in range(4):
            if candidate * _ARCSEC_PER_DEG == arcsec:
                return candidate
            candidate = math.nextafter(candidate, direction)
    return degrees


def _float_card(keyword: str, value: float, comment: str) -> fits.Card:
    """Make a card holding ``value`` at full precision (astropy rounds to 20 characters)."""
    text = repr(float(value)).upper()  # the shortest text that reads back as the same double
    return fits.Card.fromstring(f"{keyword:<8}= {text:>20} / {comment}")


# -- FITS writing and reading ----------------------------------------------------------------------
#
# `_image_to_hdus` says what a file holds, as astropy HDUs; `write_fits` writes the very same bytes
# without them (astropy's writeto verifies every card and byte-swaps the pixels in place and back,
# and building the binary tables costs more than writing them). `read_fits` reads files in the
# layout it writes with plain reads; anything else (another writer's file, scaled pixels, other
# column formats, a truncated file) goes to `_read_fits_with_astropy`, the reader of record.

_END_CARD = "END" + " " * 77
_CARD_LENGTH = 80
_PIXEL_CHUNK = 1 << 20  # pixels byte-swapped per write: 4 MB of buffer whatever the image size
# Keyword fields of cards that say nothing about the coordinates: the WCS of a file is read without them.
_NOT_WCS_KEYWORDS = frozenset(
    f"{keyword:<8}"
    for keyword in (
        "BMAJ", "BMIN", "BPA", "BUNIT", "CASAMBM", _LAYOUT_KEYWORD, "ORIGIN", "DATE", "BTYPE", "OBJECT",
        "TELESCOP", "INSTRUME", "OBSERVER", "OBSRA", "OBSDEC", "ALTRVAL", "ALTRPIX", "VELREF", "HISTORY",
        "COMMENT",
    )
)  # fmt: skip
_TABLE_FORMAT = re.compile(r"\s*(\d*)([EJA])\s*")
_TABLE_DTYPES = {"E": ">f4", "J": ">i4"}


def _beam_key(beam: RestoringBeam) -> tuple:
    """What the primary header says about a beam, as a hashable key.

    Values are kept as `float.hex` text: 0.0 and -0.0 are equal (and hash
    alike) as floats, but are written differently.
    """
    if isinstance(beam, Beam):
        return ("one", *(value.hex() for value in astuple(beam)))
    return ("planes",) if isinstance(beam, PlaneBeams) else ()


def _image_cards(brightness_unit: str, beam_key: tuple) -> list[fits.Card]:
    """The primary header cards that follow the WCS: unit, beam, layout, origin."""
    cards = [fits.Card("BUNIT", brightness_unit, "Brightness (pixel) unit")]
    if beam_key[:1] == ("one",):
        major_arcsec, minor_arcsec, pa_deg = (float.fromhex(value) for value in beam_key[1:])
        for keyword, arcsec, comment in (
            ("BMAJ", major_arcsec, "[deg] Restoring beam major axis FWHM"),
            ("BMIN", minor_arcsec, "[deg] Restoring beam minor axis FWHM"),
        ):
            cards.append(_float_card(keyword, _degrees_reading_back_as(arcsec), comment))
        cards.append(_float_card("BPA", pa_deg, "[deg] Restoring beam position angle"))
    elif beam_key == ("planes",):
        cards.append(fits.Card("CASAMBM", True, "CASA multiple BEAMS table present"))
    cards.append(fits.Card(_LAYOUT_KEYWORD, _LAYOUT_VERSION, "radio_clean RadioImage FITS layout version"))
    cards.append(fits.Card("ORIGIN", origin()))
    return cards


def _wcs_header(wcs: WCS) -> fits.Header:
    """The WCS cards of a primary header.

    wcslib writes the observatory as OBSGEO-X/Y/Z only; OBSGEO-L/B/H, which
    it derives from them, are added so that ``WCS(header)`` has nothing to fix.
    """
    header = fits.Header()
    header.extend(wcs.to_header(relax=_WCS_HEADER_FLAGS), update=True)
    geodetic = [float(value) for value in wcs.wcs.obsgeo[3:6]]
    if "OBSGEO-X" in header and all(math.isfinite(value) for value in geodetic):
        for axis, value, comment in zip(
            "LBH",
            geodetic,
            ("[deg] observatory longitude", "[deg] observatory latitude", "[m] observatory height"),
        ):
            header.append(_float_card(f"OBSGEO-{axis}", value, comment))
    return header


def _image_to_hdus(image: RadioImage, header_cards: Sequence[fits.Card] = ()) -> fits.HDUList:
    header = _wcs_header(image.wcs)
    for card in (*_image_cards(image.brightness_unit, _beam_key(image.restoring_beam)), *header_cards):
        header.append(card, bottom=True)  # in the order given, even after COMMENT or HISTORY cards
    hdus = fits.HDUList([fits.PrimaryHDU(data=image.pixels, header=header)])
    if isinstance(image.restoring_beam, PlaneBeams):
        hdus.append(_beams_table(image.restoring_beam))
    if image.provenance:
        hdus.append(_provenance_table(image.provenance))
    return hdus


def _beams_columns(beams: PlaneBeams) -> list[tuple[str, str, str | None, np.ndarray]]:
    """BEAMS table columns (name, TFORM, unit, values) in CASA's order: channel fastest, then pol."""
    chan, pol = np.meshgrid(np.arange(beams.n_chan), np.arange(beams.n_stokes), indexing="xy")
    return [
        ("BMAJ", "1E", "arcsec", beams.major_arcsec.T.ravel()),
        ("BMIN", "1E", "arcsec", beams.minor_arcsec.T.ravel()),
        ("BPA", "1E", "deg", beams.pa_deg.T.ravel()),
        ("CHAN", "1J", None, chan.ravel().astype(np.int32)),
        ("POL", "1J", None, pol.ravel().astype(np.int32)),
    ]


def _beams_cards(beams: PlaneBeams) -> tuple[tuple[Any, ...], ...]:
    """Cards after EXTNAME in the BEAMS table, as `fits.Card` arguments."""
    return (("EXTVER", 1), ("NCHAN", beams.n_chan), ("NPOL", beams.n_stokes))


def _provenance_columns(
    provenance: Mapping[str, ProvenanceValue],
) -> list[tuple[str, str, str | None, np.ndarray]]:
    keys = list(provenance)
    values = [json.dumps(provenance[key], ensure_ascii=True) for key in keys]
    key_width = max(len(key) for key in keys)
    value_width = max(len(value) for value in values)
    return [
        ("KEY", f"{key_width}A", None, np.array(keys)),
        ("VALUE", f"{value_width}A", None, np.array(values)),
    ]


_PROVENANCE_CARDS = (
    ("COMMENT", "VALUE is JSON: strings quoted, true/false for bool, ints without a point."),
)


def _beams_table(beams: PlaneBeams) -> fits.BinTableHDU:
    return _table_hdu(_BEAMS_EXTNAME, _beams_columns(beams), _beams_cards(beams))


def _provenance_table(provenance: Mapping[str, ProvenanceValue]) -> fits.BinTableHDU:
    return _table_hdu(_PROVENANCE_EXTNAME, _provenance_columns(provenance), _PROVENANCE_CARDS)


def _table_hdu(
    name: str,
    columns: Sequence[tuple[str, str, str | None, np.ndarray]],
    cards: Sequence[tuple[Any, ...]],
) -> fits.BinTableHDU:
    table = fits.BinTableHDU.from_columns(
        [
            fits.Column(name=column, format=tform, unit=unit, array=values)
            for column, tform, unit, values in columns
        ],
        name=name,
    )
    for card in cards:
        table.header.append(fits.Card(*card))
    return table


# -- writing without astropy HDUs


def _padded(n_bytes: int) -> int:
    return -(-n_bytes // _FITS_BLOCK) * _FITS_BLOCK


def _header_bytes(texts: Iterable[str]) -> bytes:
    """Join card images into a header: END card, then blanks to a whole FITS block."""
    text = "".join(texts) + _END_CARD
    return (text + " " * (_padded(len(text)) - len(text))).encode("ascii")


def _wcs_header_text(wcs: WCS) -> str:
    """The WCS cards of a primary header, as astropy writes them (made once per distinct WCS)."""
    key = _wcs_key(wcs)
    text = _WCS_HEADER_TEXT.get(key)
    if text is None:
        text = _wcs_header(wcs).tostring(sep="", endcard=False, padding=False)
        _WCS_HEADER_TEXT.put(key, text)
    return text


@functools.lru_cache(maxsize=64)
def _primary_cards_text(shape: tuple[int, ...], extend: bool) -> str:
    """The cards astropy's PrimaryHDU puts before the user's header (EXTEND: HDUList.writeto's)."""
    cards = [
        fits.Card("SIMPLE", True, "conforms to FITS standard"),
        fits.Card("BITPIX", -32, "array data type"),
        fits.Card("NAXIS", len(shape), "number of array dimensions"),
        *(fits.Card(f"NAXIS{axis}", size) for axis, size in enumerate(reversed(shape), start=1)),
    ]
    if extend:
        cards.append(fits.Card("EXTEND", True))
    return "".join(card.image for card in cards)


@functools.lru_cache(maxsize=256)
def _image_cards_text(brightness_unit: str, beam_key: tuple) -> str:
    return "".join(card.image for card in _image_cards(brightness_unit, beam_key))


def _primary_header_bytes(image: RadioImage, *, extend: bool, header_cards: Sequence[fits.Card]) -> bytes:
    return _header_bytes(
        [
            _primary_cards_text(image.shape, extend),
            _wcs_header_text(image.wcs),
            _image_cards_text(image.brightness_unit, _beam_key(image.restoring_beam)),
            *(card.image for card in header_cards),
        ]
    )


@functools.lru_cache(maxsize=256)
def _table_header_bytes(
    name: str,
    formats: tuple[tuple[str, str, str | None], ...],
    row_bytes: int,
    n_rows: int,
    cards: tuple[tuple[Any, ...], ...],
) -> bytes:
    """The header of a binary table HDU, as astropy's from_columns + writeto writes it."""
    header = [
        fits.Card("XTENSION", "BINTABLE", "binary table extension"),
        fits.Card("BITPIX", 8, "array data type"),
        fits.Card("NAXIS", 2, "number of array dimensions"),
        fits.Card("NAXIS1", row_bytes, "length of dimension 1"),
        fits.Card("NAXIS2", n_rows, "length of dimension 2"),
        fits.Card("PCOUNT", 0, "number of group parameters"),
        fits.Card("GCOUNT", 1, "number of groups"),
        fits.Card("TFIELDS", len(formats), "number of table fields"),
    ]
    for number, (column, tform, unit) in enumerate(formats, start=1):
        header.append(fits.Card(f"TTYPE{number}", column))
        header.append(fits.Card(f"TFORM{number}", tform))
        if unit is not None:
            header.append(fits.Card(f"TUNIT{number}", unit))
    header.append(fits.Card("EXTNAME", name, "extension name"))
    header.extend(fits.Card(*card) for card in cards)
    return _header_bytes(card.image for card in header)


def _table_bytes(
    name: str,
    columns: Sequence[tuple[str, str, str | None, np.ndarray]],
    cards: tuple[tuple[Any, ...], ...],
) -> bytes:
    """A binary table HDU, header and data, as astropy's from_columns + writeto writes it."""
    dtype = np.dtype(
        [(column, _TABLE_DTYPES.get(tform[-1]) or f"S{int(tform[:-1])}") for column, tform, _, _ in columns]
    )
    rows = np.zeros(len(columns[0][3]), dtype=dtype)
    for column, _, _, values in columns:
        if dtype[column].kind == "S":
            # astropy turns trailing blanks into NULs (all but a string's first character).
            values = [value.rstrip(" ") or value[:1] for value in values.tolist()]
        rows[column] = values
    header = _table_header_bytes(
        name, tuple(column[:3] for column in columns), dtype.itemsize, len(rows), cards
    )
    data = rows.tobytes()
    return header + data + bytes(_padded(len(data)) - len(data))


def _write_pixels(stream: Any, pixels: np.ndarray) -> None:
    """Write float32 pixels big-endian, a chunk at a time (the image's own array is not touched)."""
    flat = np.ascontiguousarray(pixels, dtype=np.float32).reshape(-1).view(np.uint32)
    buffer = np.empty(min(flat.size, _PIXEL_CHUNK), dtype=">u4")
    for start in range(0, flat.size, _PIXEL_CHUNK):
        part = flat[start : start + _PIXEL_CHUNK]
        chunk = buffer[: part.size]
        np.copyto(chunk, part)  # an integer byte swap: every bit of every float (NaN payloads too) kept
        stream.write(chunk.data)
    n_bytes = 4 * flat.size
    stream.write(bytes(_padded(n_bytes) - n_bytes))


def write_fits(
    image: RadioImage, path: str, *, overwrite: bool, header_cards: Sequence[fits.Card] = ()
) -> None:
    """Write the file `_image_to_hdus` describes, byte for byte as astropy would, without astropy HDUs."""
    tables = []
    beam = image.restoring_beam
    if isinstance(beam, PlaneBeams):
        tables.append(_table_bytes(_BEAMS_EXTNAME, _beams_columns(beam), _beams_cards(beam)))
    if image.provenance:
        tables.append(
            _table_bytes(_PROVENANCE_EXTNAME, _provenance_columns(image.provenance), _PROVENANCE_CARDS)
        )
    header = _primary_header_bytes(image, extend=bool(tables), header_cards=header_cards)
    if os.path.lexists(path):
        if not overwrite:
            raise OSError(f"File {path!r} already exists. If you mean to replace it then use overwrite=True.")
        os.remove(path)  # as astropy does: a new file, never a write through a link to another one
    with open(path, "xb") as stream:
        stream.write(header)
        _write_pixels(stream, image.pixels)
        for table in tables:
            stream.write(table)


# -- reading without astropy HDUs


class _NotOurLayoutError(Exception):
    """The file is not laid out as `write_fits` writes; astropy reads it."""


def _read_exactly(stream: Any, buffer: Any) -> None:
    view = memoryview(buffer).cast("B")
    done = 0
    while done < len(view):
        n_read = stream.readinto(view[done:])
        if not n_read:
            raise _NotOurLayoutError("the file ends inside its data")
        done += n_read


def _read_header_text(stream: Any) -> tuple[str, int]:
    """Read the header at the stream's position: its cards before END, and its size on disk."""
    blocks: list[str] = []
    while True:
        block = stream.read(_FITS_BLOCK)
        if len(block) != _FITS_BLOCK or len(blocks) > 1000:
            raise _NotOurLayoutError("no complete header")
        try:
            text = block.decode("ascii")
        except UnicodeDecodeError as err:
            raise _NotOurLayoutError("a header that is not ASCII") from err
        for position in range(0, _FITS_BLOCK, _CARD_LENGTH):
            if text[position : position + _CARD_LENGTH] == _END_CARD:
                blocks.append(text[:position])
                return "".join(blocks), len(blocks) * _FITS_BLOCK
        blocks.append(text)


_KEYWORD_FIELD = re.compile(r"[A-Z0-9_-]* *")
_INTEGER_VALUE = re.compile(r"= +([+-]?[0-9]+) *(?:/.*)?")
_LOGICAL_VALUE = re.compile(r"= +([TF]) *(?:/.*)?")
_STRING_VALUE = re.compile(r"= +'((?:[^']|'')*)' *(?:/.*)?")


class _Cards:
    """The cards of a header, found by keyword (the first of each, as `fits.Header` finds them).

    Integer, logical and string values are read with strict patterns, and
    anything else a caller asks for through `value` is read by astropy's
    own `fits.Card`; a card that does not fit the pattern asked for, and
    any header astropy could read otherwise (lower-case keywords, long
    strings continued on CONTINUE cards), raise `_NotOurLayoutError`.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self._cards: dict[str, str] = {}
        for position in range(0, len(text), _CARD_LENGTH):
            card = text[position : position + _CARD_LENGTH]
            if not _KEYWORD_FIELD.fullmatch(card, 0, 8):
                raise _NotOurLayoutError(f"a keyword this reader does not read: {card[:8]!r}")
            self._cards.setdefault(card[:8].rstrip(), card)
        if "CONTINUE" in self._cards:
            raise _NotOurLayoutError("a long string value")

    def __contains__(self, keyword: str) -> bool:
        return keyword in self._cards

    def _match(self, pattern: re.Pattern, keyword: str) -> re.Match | None:
        card = self._cards.get(keyword)
        if card is None:
            return None
        match = pattern.fullmatch(card, 8)
        if match is None:
            raise _NotOurLayoutError(f"{keyword} has a value this reader does not read")
        return match

    def integer(self, keyword: str, default: int | None = None) -> int:
        match = self._match(_INTEGER_VALUE, keyword)
        if match is None:
            if default is None:
                raise _NotOurLayoutError(f"no {keyword}")
            return default
        return int(match[1])

    def logical(self, keyword: str) -> bool | None:
        match = self._match(_LOGICAL_VALUE, keyword)
        return None if match is None else match[1] == "T"

    def string(self, keyword: str, default: str | None = None) -> str | None:
        match = self._match(_STRING_VALUE, keyword)
        return default if match is None else match[1].replace("''", "'").rstrip(" ")

    def value(self, keyword: str) -> Any:
        return fits.Card.fromstring(self._cards[keyword]).value


def _data_size(cards: _Cards) -> int:
    """Bytes of data (before padding) of an HDU, as the FITS standard defines them."""
    n_axes = cards.integer("NAXIS")
    if not n_axes:
        return 0
    sizes = [cards.integer(f"NAXIS{axis}") for axis in range(1, n_axes + 1)]
    bitpix, pcount, gcount = cards.integer("BITPIX"), cards.integer("PCOUNT", 0), cards.integer("GCOUNT", 1)
    return abs(bitpix) // 8 * gcount * (pcount + math.prod(sizes))


def _file_wcs(cards: _Cards) -> WCS:
    """``WCS(header, naxis=4)`` of a primary header's coordinate cards, made once per distinct set.

    Cards that describe the image rather than its coordinates (beam, unit,
    OBJECT, DATE, HISTORY, ...) are left out, so that images differing only
    in those share one WCS, and what is read back is the WCS that was written.
    """
    text = cards.text
    key = "".join(
        text[position : position + _CARD_LENGTH]
        for position in range(0, len(text), _CARD_LENGTH)
        if text[position : position + 8] not in _NOT_WCS_KEYWORDS
    )
    wcs = _FILE_WCS.get(key)
    if wcs is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(fits.Header.fromstring(key), naxis=4)
        _FILE_WCS.put(key, wcs)
    return wcs


def _table_rows(stream: Any, cards: _Cards, offset: int) -> np.ndarray:
    """The rows of a plain binary table (scalar E and J columns, A strings) as a numpy record array."""
    layout = [cards.integer(keyword) for keyword in ("BITPIX", "NAXIS", "PCOUNT", "GCOUNT")]
    if cards.string("XTENSION") != "BINTABLE" or layout != [8, 2, 0, 1] or "THEAP" in cards:
        raise _NotOurLayoutError("not a plain binary table")
    fields = []
    for number in range(1, cards.integer("TFIELDS") + 1):
        name, tform = cards.string(f"TTYPE{number}"), cards.string(f"TFORM{number}")
        match = _TABLE_FORMAT.fullmatch(tform) if tform is not None else None
        special = ("TSCAL", "TZERO", "TNULL", "TDIM")
        if name is None or match is None or any(f"{key}{number}" in cards for key in special):
            raise _NotOurLayoutError("a table column this reader does not read")
        repeat, code = int(match[1] or 1), match[2]
        if code != "A" and repeat != 1:
            raise _NotOurLayoutError("a vector column")
        fields.append((name, _TABLE_DTYPES.get(code) or f"S{repeat}"))
    try:
        dtype = np.dtype(fields)
    except (TypeError, ValueError) as err:
        raise _NotOurLayoutError("repeated column names") from err
    if dtype.itemsize != cards.integer("NAXIS1"):
        raise _NotOurLayoutError("a row length that is not the sum of its columns")
    rows = np.empty(cards.integer("NAXIS2"), dtype=dtype)
    stream.seek(offset)
    _read_exactly(stream, rows)
    return rows


def _table_strings(column: np.ndarray) -> list[str]:
    """A string column as astropy gives it: trailing NULs and blanks dropped."""
    try:
        return [value.decode("ascii").rstrip() for value in column.tolist()]
    except UnicodeDecodeError as err:
        raise _NotOurLayoutError("a string column that is not ASCII") from err


def _read_our_layout(path: str, channels: tuple[int, int] | slice | None) -> RadioImage:
    with open(path, "rb", buffering=0) as stream:
        file_size = os.fstat(stream.fileno()).st_size
        text, header_size = _read_header_text(stream)
        header = _Cards(text)
        if (
            header.logical("SIMPLE") is not True
            or header.integer("BITPIX") != -32
            or header.integer("NAXIS") != 4
            or any(keyword in header for keyword in ("BSCALE", "BZERO", "BLANK", "GROUPS"))
        ):
            raise _NotOurLayoutError("not a float32 image without scaling")
        data_size = _data_size(header)
        nx, ny, n_chan, n_stokes = (header.integer(f"NAXIS{axis}") for axis in range(1, 5))
        if not data_size:
            raise _NotOurLayoutError("no pixels")
        # The extensions: where the first one of each name starts (as HDUList[name] finds it).
        tables: dict[str, tuple[_Cards, int]] = {}
        offset = header_size + _padded(data_size)
        while offset < file_size:
            stream.seek(offset)
            extension_text, extension_size = _read_header_text(stream)
            extension = _Cards(extension_text)
            name = extension.string("EXTNAME", "").strip().upper()
            tables.setdefault(name, (extension, offset + extension_size))
            offset += extension_size + _padded(_data_size(extension))
        if offset != file_size:
            raise _NotOurLayoutError("the file ends inside an extension")
        start, stop = _channel_range(channels, n_chan) if channels is not None else (0, n_chan)
        # Only the requested planes are read: for each Stokes, channels start..stop-1 are contiguous.
        raw = np.empty((n_stokes, stop - start, ny, nx), dtype=np.uint32)
        plane_bytes = 4 * nx * ny
        for stokes in range(n_stokes):
            stream.seek(header_size + (stokes * n_chan + start) * plane_bytes)
            _read_exactly(stream, raw[stokes])
        if sys.byteorder == "little":
            raw.byteswap(inplace=True)  # FITS is big-endian; the swap is in place, the bits are kept
        pixels = raw.view(np.float32)
        beam: RestoringBeam = None
        if "BMAJ" in header:
            beam = Beam(
                header.value("BMAJ") * _ARCSEC_PER_DEG,
                header.value("BMIN") * _ARCSEC_PER_DEG,
                header.value("BPA"),
            )
        elif header.logical("CASAMBM"):
            if _BEAMS_EXTNAME not in tables:
                raise _NotOurLayoutError("no BEAMS table")
            table, table_offset = tables[_BEAMS_EXTNAME]
            rows = _table_rows(stream, table, table_offset)
            if not {"BMAJ", "BMIN", "BPA", "CHAN", "POL"} <= set(rows.dtype.names):
                raise _NotOurLayoutError("BEAMS columns under other names")
            shape = (table.integer("NCHAN", n_chan), table.integer("NPOL", n_stokes))
            beam = _beams_from_table(rows, shape, n_chan, n_stokes)
        provenance: dict[str, ProvenanceValue] = {}
        if _PROVENANCE_EXTNAME in tables:
            table, table_offset = tables[_PROVENANCE_EXTNAME]
            rows = _table_rows(stream, table, table_offset)
            names = set(rows.dtype.names)
            if not {"KEY", "VALUE"} <= names or {rows.dtype["KEY"].kind, rows.dtype["VALUE"].kind} != {"S"}:
                raise _NotOurLayoutError("PROVENANCE columns under other names or types")
            provenance = _provenance_from_columns(_table_strings(rows["KEY"]), _table_strings(rows["VALUE"]))
        brightness_unit = header.string("BUNIT", "").strip()
    wcs = _file_wcs(header).deepcopy()
    wcs.wcs.crpix[2] -= start
    return RadioImage(
        pixels,
        wcs,
        brightness_unit=brightness_unit,
        restoring_beam=_beam_for_channels(beam, start, stop),
        provenance=provenance,
    )


def read_fits(path: str, channels: tuple[int, int] | slice | None) -> RadioImage:
    """Read a RadioImage FITS file: directly if it is in our layout, else with astropy."""
    try:
        return _read_our_layout(path, channels)
    except _NotOurLayoutError:
        return _read_fits_with_astropy(path, channels)


def _read_fits_with_astropy(path: str, channels: tuple[int, int] | slice | None) -> RadioImage:
    with fits.open(path, memmap=False, lazy_load_hdus=True) as hdus:
        primary = hdus[0]
        header = primary.header
        if header.get("NAXIS") != 4:
            raise ValueError(f"{path} is not a RadioImage FITS file: its primary HDU is not a 4-axis image.")
        n_stokes, n_chan = header["NAXIS4"], header["NAXIS3"]
        start, stop = _channel_range(channels, n_chan) if channels is not None else (0, n_chan)
        # Section reads only the requested planes from the file, never the whole cube.
        pixels = np.asarray(primary.section[:, start:stop, :, :], dtype=np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header, naxis=4)
        beam: RestoringBeam = None
        if "BMAJ" in header:
            beam = Beam(header["BMAJ"] * _ARCSEC_PER_DEG, header["BMIN"] * _ARCSEC_PER_DEG, header["BPA"])
        elif header.get("CASAMBM", False):
            table = hdus[_BEAMS_EXTNAME]
            shape = (int(table.header.get("NCHAN", n_chan)), int(table.header.get("NPOL", n_stokes)))
            beam = _beams_from_table(table.data, shape, n_chan, n_stokes)
        provenance = {}
        if _has_extension(hdus, _PROVENANCE_EXTNAME):
            data = hdus[_PROVENANCE_EXTNAME].data
            provenance = _provenance_from_columns(data["KEY"], data["VALUE"])
    return RadioImage(
        pixels,
        _wcs_for_channels(wcs, start),
        brightness_unit=header.get("BUNIT", "").strip(),
        restoring_beam=_beam_for_channels(beam, start, stop),
        provenance=provenance,
    )


def read_fits_provenance(path: str) -> dict[str, ProvenanceValue]:
    """Read only the provenance of a RadioImage FITS file (no pixels).

    Parameters
    ----------
    path : `str`
        The FITS file.

    Returns
    -------
    provenance : `dict` [`str`, `str` | `int` | `float` | `bool`]
        The ``PROVENANCE`` table's entries (empty if it has none).
    """
    with fits.open(path, memmap=False, lazy_load_hdus=True) as hdus:
        if not _has_extension(hdus, _PROVENANCE_EXTNAME):
            return {}
        data = hdus[_PROVENANCE_EXTNAME].data
        return _provenance_from_columns(data["KEY"], data["VALUE"])


def _has_extension(hdus: fits.HDUList, extname: str) -> bool:
    try:
        hdus[extname]
    except KeyError:
        return False
    return True


def _beams_from_table(data: Any, shape: tuple[int, int], n_chan: int, n_stokes: int) -> PlaneBeams:
    if shape != (n_chan, n_stokes):
        raise ValueError(f"The BEAMS table is for {shape} planes but the image has {(n_chan, n_stokes)}.")
    arrays = [np.zeros(shape, dtype=np.float32) for _ in range(3)]
    seen = np.zeros(shape, dtype=bool)
    chan, pol = data["CHAN"], data["POL"]
    for array, column in zip(arrays, ("BMAJ", "BMIN", "BPA")):
        array[chan, pol] = data[column]
    seen[chan, pol] = True
    if not seen.all():
        raise ValueError(f"The BEAMS table leaves {int((~seen).sum())} planes without a beam.")
    return PlaneBeams(*arrays)


def _provenance_from_columns(keys: Iterable[Any], values: Iterable[Any]) -> dict[str, ProvenanceValue]:
    return {str(key): json.loads(value) for key, value in zip(keys, values)}
