"""Tests of RadioImage, its FITS formatter, the CASA image bridge and a Butler round trip."""

from __future__ import annotations

import math
import os
import shutil
import uuid

import casatools  # set up for offline use by conftest.py
import numpy as np
import pytest
from astropy.io import fits
from astropy.io.fits.hdu.image import _ImageBaseHDU
from astropy.wcs import WCS
from lsst.daf.butler import DatasetProvenance, DatasetType

import radio_clean.image_fits
from radio_clean.casa import CasaError, read_casa_image, write_casa_image
from radio_clean.image import STOKES_CODES, Beam, PlaneBeams, RadioImage, make_image_wcs
from radio_clean.repo import create_repo

# WCS(header) on files with OBSGEO/DATE-OBS reports the fixes it makes; they are expected here.
pytestmark = pytest.mark.filterwarnings("ignore::astropy.wcs.FITSFixedWarning")

_CASA_FRAMES = {"TOPOCENT": "TOPO", "LSRK": "LSRK", "BARYCENT": "BARY", "": "Undefined"}
VLA_ITRF_XYZ = (-1601156.673287362, -5041988.986065895, 3554879.2368205097)
PROVENANCE = {
    "task": "MakePsfTask",
    "config_digest": "9f2c1e",
    "niter": 1000,
    "threshold_jy": 1.2345678901234567e-05,
    "pbcor": False,
    "wide_int": 2**62,
    "negative_wide_int": -(2**40),
    "note": "ünïcode survives",
    # Not a legal FITS keyword: CASA's exportfits would fail if it were in the image's miscinfo.
    "software.casatools": "6.7.5.18",
}


def _cube_image() -> RadioImage:
    """Two Stokes x 6 channels x 12 x 10 pixels, per-plane beams, TOPOCENT, rest frequency."""
    wcs = make_image_wcs(
        ra_deg=187.2779154,
        dec_deg=2.0523883,
        cell_arcsec=0.37,
        nx=10,
        ny=12,
        frequency_hz=8.0851e9 + 1 / 3,
        channel_width_hz=5e7 / 3,
        spectral_frame="TOPO",
        stokes=("I", "Q"),
        rest_frequency_hz=1420405751.786,
        radesys="FK5",
    )
    wcs.wcs.dateobs = "2020-01-01T00:00:00.123"
    wcs.wcs.obsgeo[:3] = VLA_ITRF_XYZ
    rng = np.random.default_rng(20261122)
    pixels = rng.normal(size=(2, 6, 12, 10)).astype(np.float32)
    pixels[1, 3, 4, 5] = np.nan
    major = rng.uniform(2.0, 3.0, size=(6, 2))
    beams = PlaneBeams(major, major * rng.uniform(0.5, 1.0, size=(6, 2)), rng.uniform(-90, 90, size=(6, 2)))
    return RadioImage(pixels, wcs, brightness_unit="Jy/beam", restoring_beam=beams, provenance=PROVENANCE)


def _plane_image() -> RadioImage:
    """One Stokes, one channel, a single beam with values that are awkward in degrees."""
    wcs = make_image_wcs(
        ra_deg=10.0,
        dec_deg=-30.0,
        cell_arcsec=1 / 3,
        nx=16,
        ny=16,
        frequency_hz=1.4e9,
        channel_width_hz=1e6,
        spectral_frame="LSRK",
        projection="TAN",
    )
    pixels = np.linspace(-1, 1, 256, dtype=np.float32).reshape(1, 1, 16, 16)
    return RadioImage(
        pixels, wcs, brightness_unit="Jy/pixel", restoring_beam=Beam(3.1, 2.7, -33.3), provenance={"a": 1}
    )


def _galactic_image() -> RadioImage:
    """Galactic coordinates, a rotated pixel grid, SIN with PV2_2 != 0, RR/LL, no beam."""
    wcs = make_image_wcs(
        ra_deg=120.5, dec_deg=-1.25, cell_arcsec=2.0, nx=8, ny=6, frequency_hz=1e9, channel_width_hz=-1e6,
        stokes=("RR", "LL"), spectral_frame="BARY",
    )  # fmt: skip
    wcs.wcs.ctype = ["GLON-SIN", "GLAT-SIN", "FREQ", "STOKES"]
    wcs.wcs.radesys = ""
    wcs.wcs.set_pv([(2, 1, 0.0), (2, 2, 0.1)])
    rotation = np.identity(4)
    rotation[:2, :2] = [[math.cos(0.3), -math.sin(0.3)], [math.sin(0.3), math.cos(0.3)]]
    wcs.wcs.pc = rotation
    wcs.wcs.set()
    pixels = np.arange(2 * 3 * 6 * 8, dtype=np.float32).reshape(2, 3, 6, 8)
    return RadioImage(pixels, wcs, brightness_unit="K")


def _frameless_cube() -> RadioImage:
    """Three channels in no spectral frame (tclean's specmode='cubedata'), a rest frequency, one beam."""
    wcs = make_image_wcs(
        ra_deg=187.2779154, dec_deg=2.0523883, cell_arcsec=1.0, nx=8, ny=8, frequency_hz=1.4134e9,
        channel_width_hz=24414.0625, spectral_frame="Undefined", rest_frequency_hz=1420405751.786,
    )  # fmt: skip
    pixels = np.linspace(-1, 2, 3 * 64, dtype=np.float32).reshape(1, 3, 8, 8)
    return RadioImage(pixels, wcs, brightness_unit="Jy/beam", restoring_beam=Beam(3.1, 2.7, -33.3))


IMAGES = {
    "cube": _cube_image,
    "plane": _plane_image,
    "galactic": _galactic_image,
    "frameless": _frameless_cube,
}


@pytest.fixture(params=sorted(IMAGES))
def image(request) -> RadioImage:
    """Each kind of test image: cube with per-plane beams, single plane, rotated galactic cube."""
    return IMAGES[request.param]()


def _assert_same_bits(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


def _casa_image_pixels_in_numpy_order(tool, *, mask: bool = False) -> np.ndarray:
    """Return a casatools image's pixels (or mask) as (stokes, chan, y, x), whatever its axis order."""
    types = list(tool.coordsys().axiscoordinatetypes())
    stokes_axis, spectral_axis = types.index("Stokes"), types.index("Spectral")
    chunk = tool.getchunk(getmask=mask).transpose(stokes_axis, spectral_axis, 1, 0)
    return chunk if mask else chunk.astype(np.float32)


def _assert_casa_and_astropy_agree_on_world_coordinates(tool, image: RadioImage) -> None:
    """Check CASA's world coordinates of two pixels against astropy's from the image WCS."""
    coordinates = tool.coordsys()
    types = list(coordinates.axiscoordinatetypes())
    coordinates.setunits([{"Direction": "deg", "Spectral": "Hz", "Stokes": ""}[kind] for kind in types])
    spectral_axis, stokes_axis = types.index("Spectral"), types.index("Stokes")
    for x, y, chan, stokes in [(0, 0, 0, 0), (7, 5, image.n_chan - 1, image.n_stokes - 1)]:
        casa_pixel = [float(x), float(y), 0.0, 0.0]
        casa_pixel[spectral_axis], casa_pixel[stokes_axis] = float(chan), float(stokes)
        casa_world = coordinates.toworld(casa_pixel, "n")["numeric"]
        lon, lat, freq, _ = image.wcs.wcs_pix2world([[x, y, chan, stokes]], 0)[0]
        assert casa_world[0] == pytest.approx(lon, rel=1e-12)
        assert casa_world[1] == pytest.approx(lat, rel=1e-12, abs=1e-12)
        assert casa_world[spectral_axis] == pytest.approx(freq, rel=1e-15)
    coordinates.done()


# -- RadioImage ------------------------------------------------------------------------------------


def test_make_image_wcs_follows_tclean_layout():
    """make_image_wcs puts the phase centre where tclean does and sets frame and Stokes."""
    wcs = make_image_wcs(
        ra_deg=1.0, dec_deg=2.0, cell_arcsec=0.5, nx=64, ny=32, frequency_hz=1e9, channel_width_hz=-2e6,
        stokes=("I", "V"), spectral_frame="BARY",
    )  # fmt: skip
    assert list(wcs.wcs.crpix) == [33.0, 17.0, 1.0, 1.0]
    assert wcs.wcs.cdelt[0] == -0.5 / 3600 and wcs.wcs.cdelt[1] == 0.5 / 3600
    assert wcs.wcs.specsys == "BARYCENT"
    image = RadioImage(np.zeros((2, 3, 32, 64)), wcs, brightness_unit="")
    assert image.stokes == ("I", "V")
    np.testing.assert_array_equal(image.frequencies, [1e9, 0.998e9, 0.996e9])
    assert image.pixels.dtype == np.float32
    assert (image.n_stokes, image.n_chan, image.ny, image.nx) == (2, 3, 32, 64)
    assert image.rest_frequency is None


def test_channel_slice_keeps_frequencies_and_beams():
    """An in-memory channel slice keeps each channel's frequency and beams."""
    cube = _cube_image()
    part = cube.channel_slice(2, 5)
    assert part.shape == (2, 3, 12, 10)
    _assert_same_bits(part.pixels, cube.pixels[:, 2:5])
    np.testing.assert_array_equal(part.frequencies, cube.frequencies[2:5])
    assert part.wcs.wcs.crpix[2] == cube.wcs.wcs.crpix[2] - 2
    assert part.restoring_beam == cube.restoring_beam.channel_slice(2, 5)
    assert part.restoring_beam[1, 1] == cube.restoring_beam[3, 1]
    assert part.provenance == cube.provenance


@pytest.mark.parametrize(
    "make_bad, message",
    [
        (lambda c: RadioImage(c.pixels[0], c.wcs), "4 axes"),
        (lambda c: RadioImage(c.pixels, c.wcs.sub([1, 2, 3])), "4 axes"),
        (lambda c: RadioImage(c.pixels, c.wcs.sub([1, 2, 4, 3])), "FREQ, STOKES"),
        (lambda c: c.replace(restoring_beam=c.restoring_beam.channel_slice(0, 2)), "Per-plane beams"),
        (lambda c: c.replace(provenance={"bad": [1, 2]}), "only str, int, float and bool"),
        (lambda c: c.replace(provenance={"": 1}), "printable ASCII"),
        (lambda c: Beam(1.0, 2.0, 0.0), "minor <= major"),
        (lambda c: c.channel_slice(4, 2), "select no channel"),
    ],
)
def test_invalid_images_are_refused(make_bad, message):
    """Malformed pixels, axes, beams, provenance or channel ranges raise clear errors."""
    cube = _cube_image()
    with pytest.raises((ValueError, TypeError), match=message):
        make_bad(cube)


def test_unknown_spectral_frame_is_refused():
    """A SPECSYS that is not a spectral frame CASA has is refused; no SPECSYS at all is no frame."""
    cube = _cube_image()
    wcs = cube.wcs.deepcopy()
    wcs.wcs.specsys = "SOMEWHERE"
    with pytest.raises(ValueError, match="SPECSYS"):
        RadioImage(cube.pixels, wcs)
    wcs.wcs.specsys = ""
    assert RadioImage(cube.pixels, wcs).spectral_frame == ""
    with pytest.raises(ValueError, match="Unknown spectral frame 'SOMEWHERE'"):
        make_image_wcs(
            ra_deg=0, dec_deg=0, cell_arcsec=1, nx=4, ny=4, frequency_hz=1e9, channel_width_hz=1e6,
            spectral_frame="SOMEWHERE",
        )  # fmt: skip


# -- FITS ------------------------------------------------------------------------------------------


def test_fits_round_trip_is_exact(image, tmp_path):
    """Writing and reading the FITS file gives back exactly the same image."""
    path = str(tmp_path / "image.fits")
    image.to_fits(path)
    back = RadioImage.from_fits(path)
    assert back.differences(image) == []
    _assert_same_bits(back.pixels, image.pixels)
    assert back.restoring_beam == image.restoring_beam
    assert back.provenance == image.provenance
    assert {key: type(value) for key, value in back.provenance.items()} == {
        key: type(value) for key, value in image.provenance.items()
    }
    assert back.wcs.to_header_string() == image.wcs.to_header_string()
    np.testing.assert_array_equal(back.frequencies, image.frequencies)
    assert back.brightness_unit == image.brightness_unit


def test_fits_file_has_the_standard_and_casa_layout(image, tmp_path):
    """Astropy reads the WCS, unit and beams; per-plane beams are in a CASA BEAMS table."""
    path = str(tmp_path / "image.fits")
    image.to_fits(path)
    with fits.open(path) as hdus:
        header = hdus[0].header
        data = hdus[0].data
        assert data.dtype == np.dtype(">f4") and data.shape == image.shape
        wcs = WCS(header)
        assert wcs.has_celestial and wcs.wcs.spec == 2 and wcs.wcs.ctype[3] == "STOKES"
        assert wcs.wcs.ctype[2] == "FREQ" and header["CUNIT3"].strip() == "Hz"
        # As CASA's exportfits writes it: no SPECSYS for no frame.
        assert header.get("SPECSYS", "") == image.spectral_frame
        assert header["BUNIT"] == image.brightness_unit
        # World coordinates of a pixel agree with the image's own view of them.
        last_chan, last_stokes = image.n_chan - 1, image.n_stokes - 1
        ra, dec, freq, stokes = wcs.wcs_pix2world([[3, 5, last_chan, last_stokes]], 0)[0]
        assert freq == image.frequencies[last_chan]
        assert stokes == STOKES_CODES[image.stokes[last_stokes]]
        assert math.isclose(dec, image.wcs.wcs.crval[1], abs_tol=20 / 3600)
        beam = image.restoring_beam
        if beam is None:
            assert "BMAJ" not in header and "CASAMBM" not in header
        elif isinstance(beam, Beam):
            assert header["BMAJ"] == pytest.approx(3.1 / 3600, rel=1e-15)
            assert header["BMIN"] == pytest.approx(2.7 / 3600, rel=1e-15)
            assert header["BPA"] == -33.3
            assert header["BMAJ"] * 3600 == 3.1
            assert "CASAMBM" not in header
        else:
            assert header["CASAMBM"] is True and "BMAJ" not in header
            table = hdus[1]
            assert table.name == "BEAMS"
            assert table.header["NCHAN"] == image.n_chan and table.header["NPOL"] == image.n_stokes
            assert [column.name for column in table.columns] == ["BMAJ", "BMIN", "BPA", "CHAN", "POL"]
            assert [column.format for column in table.columns] == ["1E", "1E", "1E", "1J", "1J"]
            assert [column.unit for column in table.columns[:3]] == ["arcsec", "arcsec", "deg"]
            rows = table.data
            assert len(rows) == image.n_chan * image.n_stokes
            # CASA's row order: channel fastest, then polarization.
            np.testing.assert_array_equal(rows["CHAN"][: image.n_chan], np.arange(image.n_chan))
            np.testing.assert_array_equal(rows["POL"][:: image.n_chan], np.arange(image.n_stokes))
            for row in rows:
                plane = beam[int(row["CHAN"]), int(row["POL"])]
                assert (row["BMAJ"], row["BMIN"], row["BPA"]) == (
                    plane.major_arcsec,
                    plane.minor_arcsec,
                    plane.pa_deg,
                )
        assert hdus[-1].name == ("PROVENANCE" if image.provenance else "PRIMARY")


class _RecordingFile:
    """A file that records the (offset, length) of every read."""

    def __init__(self, stream, reads):
        self._stream, self._reads = stream, reads

    def read(self, size=-1):
        offset = self._stream.tell()
        data = self._stream.read(size)
        self._reads.append((offset, len(data)))
        return data

    def readinto(self, buffer):
        offset = self._stream.tell()
        n_read = self._stream.readinto(buffer)
        self._reads.append((offset, n_read))
        return n_read

    def __getattr__(self, name):
        return getattr(self._stream, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._stream.close()


def test_channel_range_read_reads_only_those_planes(tmp_path, monkeypatch):
    """A channel-range read takes only those planes from the file, with the right frequencies."""
    cube = _cube_image()
    path = str(tmp_path / "cube.fits")
    cube.to_fits(path)
    reads = []
    monkeypatch.setattr(
        radio_clean.image_fits,
        "open",
        lambda *args, **kwargs: _RecordingFile(open(*args, **kwargs), reads),
        raising=False,
    )
    part = RadioImage.from_fits(path, channels=(2, 5))
    monkeypatch.undo()

    # Bytes of each (Stokes, channel) plane in the file: channels 2-4 are read, no other plane is.
    data_start = len(fits.getheader(path).tostring())
    plane_bytes = 12 * 10 * 4
    read_bytes = np.zeros(os.path.getsize(path), dtype=bool)
    for offset, length in reads:
        read_bytes[offset : offset + length] = True
    for stokes in range(2):
        for chan in range(6):
            start = data_start + (stokes * 6 + chan) * plane_bytes
            assert read_bytes[start : start + plane_bytes].all() == (2 <= chan < 5)
            assert read_bytes[start : start + plane_bytes].any() == (2 <= chan < 5)

    _assert_same_bits(part.pixels, cube.pixels[:, 2:5])
    np.testing.assert_array_equal(part.frequencies, cube.frequencies[2:5])
    assert part.restoring_beam == cube.restoring_beam.channel_slice(2, 5)
    assert part.differences(cube.channel_slice(2, 5)) == []
    assert RadioImage.from_fits(path, channels=slice(2, 5)).differences(part) == []
    last_two = RadioImage.from_fits(path, channels=slice(-2, None))
    np.testing.assert_array_equal(last_two.frequencies, cube.frequencies[4:])
    for bad in [(5, 2), (0, 99 + 1j), slice(0, 4, 2)]:
        with pytest.raises(ValueError):
            RadioImage.from_fits(path, channels=bad)


def test_astropy_reader_reads_only_those_planes(tmp_path, monkeypatch):
    """The astropy reader (for files in another layout) also reads only the requested planes."""
    cube = _cube_image()
    path = str(tmp_path / "cube.fits")
    cube.to_fits(path)
    elements_read = []
    original_read = _ImageBaseHDU._get_scaled_image_data

    def counting_read(hdu, offset, shape):
        elements_read.append(int(np.prod(shape)))
        return original_read(hdu, offset, shape)

    def no_whole_array(hdu):
        raise AssertionError("the whole pixel array was loaded")

    monkeypatch.setattr(_ImageBaseHDU, "_get_scaled_image_data", counting_read)
    monkeypatch.setattr(_ImageBaseHDU, "data", property(no_whole_array))
    part = radio_clean.image_fits._read_fits_with_astropy(path, (2, 5))
    monkeypatch.undo()

    assert sum(elements_read) == 2 * 3 * 12 * 10
    assert part.differences(RadioImage.from_fits(path, channels=(2, 5))) == []


def test_fits_writer_writes_what_astropy_writes(image, tmp_path):
    """to_fits writes, byte for byte, the file astropy writes from the image's HDUs."""
    variants = [image, image.replace(provenance={}), image.replace(brightness_unit="")]
    if image.n_chan > 2:
        variants.append(image.channel_slice(1, 3))
    variants.append(image.replace(provenance={**image.provenance, "trailing blanks  ": "x", "b c": 1.5}))
    if isinstance(image.restoring_beam, Beam):  # 0.0 and -0.0 are equal but written differently
        variants += [image.replace(restoring_beam=Beam(3.0, 2.0, pa)) for pa in (0.0, -0.0)]
    for number, variant in enumerate(variants):
        ours, theirs = tmp_path / f"ours{number}.fits", tmp_path / f"astropy{number}.fits"
        variant.to_fits(str(ours))
        radio_clean.image_fits._image_to_hdus(variant).writeto(str(theirs))
        assert ours.read_bytes() == theirs.read_bytes()


def test_header_cards_are_written_and_ignored_on_reading(image, tmp_path):
    """Cards given to to_fits are written as astropy writes them; reading gives back the same image."""
    from radio_clean.fits_cards import date_card, history_cards, observation_cards

    cards = [
        *observation_cards(image.wcs, telescope="VLA", object_name="3C273", observer="AO88"),
        date_card(),
        *history_cards(
            tclean_parameters={"niter": 50, "cell": ["2arcsec"]},
            measurement_sets=[("/data/" + "long/" * 20 + "3C273XC1.ms", "0" * 64)],
            repository="/data/repo",
            collection="images/x",
            datasets=[
                ("image", "01a23699-1363-733c-91be-8254dc8b0b99", "images/x/finish004", {"field": "3C273"})
            ],
        ),
    ]
    ours, theirs = tmp_path / "ours.fits", tmp_path / "astropy.fits"
    image.to_fits(str(ours), header_cards=cards)
    radio_clean.image_fits._image_to_hdus(image, cards).writeto(str(theirs))
    assert ours.read_bytes() == theirs.read_bytes()
    header = fits.getheader(ours)
    assert (header["TELESCOP"], header["OBJECT"], header["OBSERVER"]) == ("VLA", "3C273", "AO88")
    assert "niter       = 50" in [str(line) for line in header["HISTORY"]]
    assert RadioImage.from_fits(str(ours)).differences(image) == []
    assert radio_clean.image_fits._read_fits_with_astropy(str(ours), None).differences(image) == []


def test_fits_reader_reads_what_astropy_reads(image, tmp_path):
    """The direct reader and the astropy reader give the same image, for every file layout."""
    path = str(tmp_path / "image.fits")
    # A unit long enough for CONTINUE cards: such files are read by astropy.
    long_unit = image.replace(brightness_unit="Jy/beam per channel " * 5 + "x")
    for variant in (image, long_unit):
        variant.to_fits(path, overwrite=True)
        ours, theirs = RadioImage.from_fits(path), radio_clean.image_fits._read_fits_with_astropy(path, None)
        assert ours.differences(theirs) == [] and ours.differences(variant) == []
        assert ours.wcs.to_header_string(relax=True) == theirs.wcs.to_header_string(relax=True)
        assert [type(value) for value in ours.provenance.values()] == [
            type(value) for value in theirs.provenance.values()
        ]
    # Another HDU after ours (e.g. added by some other program) is skipped by both.
    image.to_fits(path, overwrite=True)
    with fits.open(path, mode="append") as hdus:
        hdus.append(fits.ImageHDU(np.ones((3, 5), dtype=np.int16), name="EXTRA"))
    assert RadioImage.from_fits(path).differences(image) == []


def test_images_do_not_share_coordinates(tmp_path):
    """Changing one image's WCS changes no other image, made or read from the same WCS."""
    cube = _cube_image()
    path = str(tmp_path / "cube.fits")
    cube.to_fits(path)
    first, second = RadioImage.from_fits(path), RadioImage.from_fits(path)
    copy = cube.replace(provenance={})
    for changed in (first, copy):
        changed.wcs.wcs.crval[0] += 1.0
        changed.wcs.wcs.set()
    assert second.differences(cube) == []
    assert RadioImage.from_fits(path).differences(cube) == []
    assert cube.replace(provenance={}).differences(cube, compare_provenance=False) == []
    assert first.wcs.wcs.crval[0] == cube.wcs.wcs.crval[0] + 1.0


def test_casa_importfits_reads_the_fits(image, tmp_path):
    """CASA's importfits reads our pixels, spectral axis, world coordinates and beams."""
    from casatasks import importfits

    path = str(tmp_path / "image.fits")
    casa_path = str(tmp_path / "imported.im")
    image.to_fits(path)
    importfits(fitsimage=path, imagename=casa_path)
    tool = casatools.image()
    tool.open(casa_path)
    try:
        # importfits masks blanked (NaN) pixels and, by default, sets them to zero.
        blanked = np.isnan(image.pixels)
        casa_pixels = _casa_image_pixels_in_numpy_order(tool)
        np.testing.assert_array_equal(_casa_image_pixels_in_numpy_order(tool, mask=True), ~blanked)
        assert (casa_pixels[blanked] == 0).all()
        _assert_same_bits(np.where(blanked, np.float32(0), image.pixels), casa_pixels)
        assert tool.brightnessunit() == image.brightness_unit
        coordinates = tool.coordsys()
        record = coordinates.torecord()
        spectral = next(value for key, value in record.items() if key.startswith("spectral"))
        assert spectral["wcs"]["crval"] == image.wcs.wcs.crval[2]
        assert spectral["wcs"]["cdelt"] == image.wcs.wcs.cdelt[2]
        assert spectral["system"] == _CASA_FRAMES[image.spectral_frame]
        assert spectral["restfreq"] == (image.rest_frequency or 0.0)
        assert list(record[next(key for key in record if key.startswith("stokes"))]["stokes"]) == list(
            image.stokes
        )
        coordinates.done()
        _assert_casa_and_astropy_agree_on_world_coordinates(tool, image)
        beam = image.restoring_beam
        if beam is None:
            assert tool.restoringbeam() == {}
        elif isinstance(beam, Beam):
            casa_beam = tool.restoringbeam()
            assert casa_beam["major"]["value"] == pytest.approx(beam.major_arcsec, rel=1e-12)
            assert casa_beam["minor"]["value"] == pytest.approx(beam.minor_arcsec, rel=1e-12)
            assert casa_beam["positionangle"]["value"] == pytest.approx(beam.pa_deg, rel=1e-12)
        else:
            assert tool.restoringbeam()["nChannels"] == image.n_chan
            for chan in range(image.n_chan):
                for stokes in range(image.n_stokes):
                    casa_beam = tool.restoringbeam(channel=chan, polarization=stokes)
                    assert casa_beam["major"] == {"unit": "arcsec", "value": beam[chan, stokes].major_arcsec}
                    assert casa_beam["minor"]["value"] == beam[chan, stokes].minor_arcsec
                    assert casa_beam["positionangle"]["value"] == beam[chan, stokes].pa_deg
    finally:
        tool.close()


# -- CASA images -----------------------------------------------------------------------------------


def test_casa_image_round_trip(image, tmp_path):
    """RadioImage -> CASA image -> RadioImage is exact; the CASA image has tclean's axis order."""
    casa_path = write_casa_image(image, str(tmp_path / "image.im"))
    assert os.path.isabs(casa_path) and os.path.isdir(casa_path)

    tool = casatools.image()
    tool.open(casa_path)
    try:
        assert list(tool.coordsys().axiscoordinatetypes()) == ["Direction", "Direction", "Stokes", "Spectral"]
        _assert_casa_and_astropy_agree_on_world_coordinates(tool, image)
        n_stokes, n_chan, ny, nx = image.shape
        assert list(tool.shape()) == [nx, ny, n_stokes, n_chan]
        chunk = tool.getchunk()
        x, y = nx - 1, ny - 2
        assert chunk[x, y, n_stokes - 1, n_chan - 1] == image.pixels[n_stokes - 1, n_chan - 1, y, x]
        _assert_same_bits(chunk.transpose(2, 3, 1, 0).astype(np.float32), image.pixels)
        assert tool.pixeltype() == "float"
        miscinfo = tool.miscinfo()
        # CASA's own FITS export works and agrees with our coordinates (to its 13 digits).
        fits_path = str(tmp_path / "exported.fits")
        assert tool.tofits(fits_path, history=False)
    finally:
        tool.close()
    assert miscinfo == {}
    exported = WCS(fits.getheader(fits_path))
    for attribute in ("crval", "cdelt", "crpix"):
        np.testing.assert_allclose(
            getattr(exported.wcs, attribute), getattr(image.wcs.wcs, attribute), rtol=1e-12
        )
    assert exported.wcs.radesys == image.wcs.wcs.radesys
    _assert_same_bits(fits.getdata(fits_path).astype(np.float32), image.pixels)

    back = read_casa_image(casa_path)
    assert back.differences(image, rtol=1e-12) == []
    _assert_same_bits(back.pixels, image.pixels)
    assert back.restoring_beam == image.restoring_beam or back.restoring_beam.isclose(
        image.restoring_beam, rtol=1e-15
    )
    assert back.provenance == image.provenance
    assert back.spectral_frame == image.spectral_frame
    assert back.rest_frequency == image.rest_frequency
    np.testing.assert_allclose(back.frequencies, image.frequencies, rtol=1e-15)
    np.testing.assert_allclose(back.wcs.wcs.obsgeo[:3], image.wcs.wcs.obsgeo[:3], rtol=1e-12)

    with pytest.raises(CasaError, match="already exists"):
        write_casa_image(image, casa_path)
    write_casa_image(image.replace(brightness_unit="Jy"), casa_path, overwrite=True)
    assert read_casa_image(casa_path).brightness_unit == "Jy"


def test_read_casa_image_refuses_images_without_spectral_and_stokes_axes(tmp_path):
    """A 2-axis CASA image or a missing path gives a CasaError that says why."""
    path = str(tmp_path / "test.im")
    tool = casatools.image()
    tool.maketestimage(path)
    tool.close()
    with pytest.raises(CasaError, match="no spectral or stokes axis"):
        read_casa_image(path)
    with pytest.raises(CasaError, match="not a CASA image"):
        read_casa_image(str(tmp_path / "missing.im"))


@pytest.fixture(scope="module")
def tclean_image(tmp_path_factory) -> str:
    """Make a small tclean cube (Stokes I and V, 1 channel) of the VLA 3C273 demo data (B1950_VLA)."""
    import casadata
    from casatasks import tclean

    work = tmp_path_factory.mktemp("tclean")
    ms_path = str(work / "3c273.ms")
    ms = casatools.ms()
    ms.fromfits(ms_path, os.path.join(casadata.datapath, "demo", "3C273XC1.fits"))
    ms.close()
    imagename = str(work / "3c273")
    tclean(
        vis=ms_path, imagename=imagename, imsize=48, cell="0.5arcsec", niter=10, specmode="cube",
        stokes="IV", pbcor=False,
    )  # fmt: skip
    shutil.rmtree(ms_path)
    return imagename + ".image"


def test_read_casa_image_of_a_tclean_product(tclean_image, tmp_path):
    """A real tclean image reads as CASA's own exportfits sees it."""
    image = read_casa_image(tclean_image)
    assert image.shape == (2, 1, 48, 48) and image.stokes == ("I", "V")
    assert image.brightness_unit == "Jy/beam"
    assert image.spectral_frame == "LSRK"
    assert (image.wcs.wcs.radesys, image.wcs.wcs.equinox) == ("FK4", 1979.9)
    assert image.provenance["INSTRUME"] == "VLA"
    assert isinstance(image.restoring_beam, PlaneBeams)
    assert 0.5 < image.restoring_beam[0, 0].minor_arcsec <= image.restoring_beam[0, 0].major_arcsec < 10

    # Compare with CASA's own FITS export of the same image.
    fits_path = str(tmp_path / "exported.fits")
    tool = casatools.image()
    tool.open(tclean_image)
    casa_beam = tool.restoringbeam(channel=0, polarization=1)
    peak = tool.statistics()["max"][0]
    tool.tofits(fits_path, history=False)
    tool.close()
    with fits.open(fits_path) as hdus:
        exported = WCS(hdus[0].header)
        _assert_same_bits(hdus[0].data.astype(np.float32), image.pixels)
        assert hdus[0].header["SPECSYS"].strip() == image.spectral_frame
    assert image.pixels.max() == np.float32(peak) and peak > 1.0
    for attribute in ("crval", "cdelt", "crpix"):
        np.testing.assert_allclose(
            getattr(exported.wcs, attribute), getattr(image.wcs.wcs, attribute), rtol=1e-12
        )
    assert exported.wcs.restfrq == pytest.approx(image.rest_frequency, rel=1e-12)
    assert exported.wcs.mjdobs == pytest.approx(image.wcs.wcs.mjdobs, abs=1e-9)
    assert image.restoring_beam[0, 1].major_arcsec == np.float32(casa_beam["major"]["value"])

    back = read_casa_image(write_casa_image(image, str(tmp_path / "again.im")))
    assert back.differences(image, rtol=1e-12) == []


# -- Butler ----------------------------------------------------------------------------------------


def _repo_with_image_type(root):
    """A new radio_clean repository with a ``test_image`` dataset type and one data ID's records."""
    butler = create_repo(root)
    dataset_type = DatasetType(
        "test_image", {"instrument", "field", "band"}, "RadioImage", universe=butler.dimensions
    )
    butler.registry.registerDatasetType(dataset_type)
    butler.registry.insertDimensionData("instrument", {"name": "VLA"})
    butler.registry.insertDimensionData(
        "field", {"instrument": "VLA", "name": "3C273", "ra": 187.27, "dec": 2.05}
    )
    butler.registry.insertDimensionData(
        "band",
        {
            "instrument": "VLA",
            "name": "8085MHz-1ch",
            "freq_min": 8.085e9,
            "freq_max": 8.085e9,
            "n_chan": 1,
            "chan_width": 5e7,
            "freq_frame": "TOPO",
        },
    )
    return butler


_DATA_ID = {"instrument": "VLA", "field": "3C273", "band": "8085MHz-1ch"}


def test_butler_round_trip(tmp_path):
    """put/get through a radio_clean repository, with a channel-range get and the file URI."""
    cube = _cube_image()
    butler = _repo_with_image_type(str(tmp_path / "repo"))
    run = "test/run"
    butler.registry.registerRun(run)
    data_id = _DATA_ID
    ref = butler.put(cube, "test_image", data_id, run=run)

    got = butler.get("test_image", data_id, collections=run)
    assert isinstance(got, RadioImage)
    assert got.differences(cube, compare_provenance=False) == []
    _assert_same_bits(got.pixels, cube.pixels)
    assert got.restoring_beam == cube.restoring_beam
    # The image's own provenance is kept; the Butler adds its own under LSST.BUTLER.
    assert {key: got.provenance[key] for key in cube.provenance} == cube.provenance
    assert got.provenance["LSST.BUTLER.ID"] == str(ref.id)
    assert got.provenance["LSST.BUTLER.RUN"] == run
    assert got.provenance["LSST.BUTLER.DATAID.FIELD"] == "3C273"

    part = butler.get("test_image", data_id, collections=run, parameters={"channels": (2, 5)})
    _assert_same_bits(part.pixels, cube.pixels[:, 2:5])
    np.testing.assert_array_equal(part.frequencies, cube.frequencies[2:5])
    assert part.restoring_beam == cube.restoring_beam.channel_slice(2, 5)

    uri = butler.getURI("test_image", data_id, collections=run)
    assert uri.getExtension() == ".fits"
    with fits.open(uri.ospath) as hdus:
        wcs = WCS(hdus[0].header)
        assert wcs.has_celestial and wcs.wcs.spec == 2 and wcs.wcs.ctype[3] == "STOKES"
        assert wcs.wcs.crval[2] == cube.wcs.wcs.crval[2]
        assert wcs.wcs.specsys == "TOPOCENT"
        _assert_same_bits(hdus[0].data.astype(np.float32), cube.pixels)
    butler.close()


def test_butler_round_trip_is_exact(image, tmp_path):
    """A Butler put and get keeps pixels, WCS, beam(s) and provenance exactly, and so does a re-put."""
    butler = _repo_with_image_type(str(tmp_path / "repo"))
    for run in ("inputs", "first", "second"):
        butler.registry.registerRun(run)
    # Provenance as a quantum gives it: its id and its inputs.
    provenance = DatasetProvenance(quantum_id=uuid.uuid4())
    provenance.add_input(butler.put(image.replace(provenance={}), "test_image", _DATA_ID, run="inputs"))
    ref = butler.put(image, "test_image", _DATA_ID, run="first", provenance=provenance)
    got = butler.get("test_image", _DATA_ID, collections="first")

    _assert_same_bits(got.pixels, image.pixels)
    assert got.wcs.to_header_string(relax=True) == image.wcs.to_header_string(relax=True)
    assert got.differences(image, compare_provenance=False) == []
    if isinstance(image.restoring_beam, PlaneBeams):
        for name in ("major_arcsec", "minor_arcsec", "pa_deg"):
            _assert_same_bits(getattr(got.restoring_beam, name), getattr(image.restoring_beam, name))
    else:
        assert got.restoring_beam == image.restoring_beam
    expected = {
        **image.provenance,
        **provenance.to_flat_dict(ref, prefix="LSST.BUTLER", sep=".", simple_types=True),
    }
    assert got.provenance == expected
    assert {key: type(value) for key, value in got.provenance.items()} == {
        key: type(value) for key, value in expected.items()
    }
    assert got.provenance["LSST.BUTLER.QUANTUM"] == str(provenance.quantum_id)
    assert "LSST.BUTLER.INPUT.0.ID" in got.provenance

    # Putting what was got replaces the Butler's entries instead of piling them up.
    again = butler.put(got, "test_image", _DATA_ID, run="second")
    second = butler.get("test_image", _DATA_ID, collections="second")
    _assert_same_bits(second.pixels, image.pixels)
    assert second.differences(image, compare_provenance=False) == []
    butler_entries = DatasetProvenance().to_flat_dict(again, prefix="LSST.BUTLER", sep=".", simple_types=True)
    assert second.provenance == {**image.provenance, **butler_entries}
    butler.close()
