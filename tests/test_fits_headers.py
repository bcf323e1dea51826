"""The exported FITS headers against tclean + exportfits of the same job, and the provenance they carry.

One small job (64 pixels, 50 iterations on the VLA demo MS) runs through
``radio-clean image`` and through tclean + exportfits; every card exportfits
writes must be in our files with the same value where the meaning is the
same, CASA must read ours back with telescope, object, beam and frequency,
astropy must build the WCS without fixing anything, and the HISTORY must say
how the file was made.
"""

import os
import shutil
import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS

from radio_clean.casa import reattach_casa_log
from radio_clean.cli import main
from radio_clean.fits_cards import software_versions
from radio_clean.parameters import CleanParametersConfig
from radio_clean.repo import open_repo

PARAMETERS = {"imsize": 64, "cell": "2arcsec", "niter": 50, "datacolumn": "data"}
PRODUCTS = ("image", "residual", "model", "psf", "pb", "sumwt", "mask")

NOT_WRITTEN = {
    # Defaults (unscaled pixels, identity PC, no SIN obliquity, no Stokes unit) that wcslib leaves out.
    "BSCALE", "BZERO", "PV2_1", "PV2_2", "CUNIT4",
    *(f"PC{i}_{j}" for i in range(1, 5) for j in range(1, 5)),
    # tclean's bookkeeping of its own process (MPI processes, memory, chunks) and an unknown distance.
    "MPIPROCS", "CHNCHNKS", "MEMREQ", "MEMAVAIL", "USEWEIGH", "DISTANCE",
}  # fmt: skip
"""Cards exportfits writes of a tclean image that our files do not have, and why."""

OURS_ONLY = {
    "WCSAXES", "MJDREF", "MJD-OBS", "OBSGEO-L", "OBSGEO-B", "OBSGEO-H", "RCLAYOUT",
    # The model and mask keep the restoring beam in our files (tclean's have none).
    "BMAJ", "BMIN", "BPA",
}  # fmt: skip
"""Cards only our files have: the full WCS as wcslib writes it, and our layout version."""

SAME_TEXT = (
    "TELESCOP", "INSTRUME", "OBJECT", "OBSERVER", "BUNIT", "BTYPE", "RADESYS", "SPECSYS", "TIMESYS",
    "CTYPE1", "CTYPE2", "CTYPE3", "CTYPE4", "CUNIT1", "CUNIT2", "CUNIT3", "VELREF",
)  # fmt: skip
SAME_NUMBER = (
    "CRVAL1", "CRVAL2", "CRVAL3", "CRVAL4", "CDELT1", "CDELT2", "CDELT3", "CDELT4",
    "CRPIX1", "CRPIX2", "CRPIX3", "CRPIX4", "RESTFRQ", "EQUINOX", "LONPOLE", "LATPOLE",
    "OBSRA", "OBSDEC", "OBSGEO-X", "OBSGEO-Y", "OBSGEO-Z", "ALTRPIX",
)  # fmt: skip


def _keys(header):
    return {key for key in header if key not in ("", "COMMENT", "HISTORY")}


def _history_lines(header):
    """The HISTORY record as lines: a card filled to its last column goes on in the next."""
    lines, line = [], ""
    for card in header.cards:
        if card.keyword == "HISTORY":
            line += str(card.value)
            if len(str(card.value)) < 72:
                lines.append(line)
                line = ""
    return lines


@pytest.fixture(scope="module")
def job(demo_ms_dir, tmp_path_factory):
    """Run the job through ``radio-clean image`` and through tclean + exportfits."""
    from casatasks import casalog, exportfits, tclean

    directory = tmp_path_factory.mktemp("fits_headers")
    ms = str(directory / "3C273XC1.ms")
    shutil.copytree(demo_ms_dir / "3C273XC1.ms", ms)
    settings = [f"--set={name}={value}" for name, value in PARAMETERS.items()]
    arguments = ["image", ms, "--repo", str(directory / "repo"), "--export", str(directory / "ours")]
    assert main([*arguments, "--output", "images/headers", *settings]) == 0
    casalog.setlogfile(str(directory / "casa.log"))
    try:
        tclean(vis=ms, imagename=str(directory / "tclean" / "img"), **PARAMETERS)
        for product in PRODUCTS:
            exportfits(
                imagename=str(directory / "tclean" / f"img.{product}"),
                fitsimage=str(directory / "tclean" / f"{product}.fits"),
            )
    finally:
        reattach_casa_log(casalog)
    return directory


def test_every_exportfits_card_with_its_value(job):
    """Our files have every card tclean's exportfits writes, with the same values where they mean the same."""
    for product in PRODUCTS:
        ours = fits.getheader(job / "ours" / f"{product}.fits")
        theirs = fits.getheader(job / "tclean" / f"{product}.fits")
        assert _keys(theirs) - _keys(ours) <= NOT_WRITTEN, product
        assert _keys(ours) - _keys(theirs) <= OURS_ONLY, product
        for key in SAME_TEXT:
            assert str(ours[key]).strip() == str(theirs[key]).strip(), (product, key)
        for key in SAME_NUMBER:
            assert ours[key] == pytest.approx(theirs[key], rel=1e-11, abs=1e-9), (product, key)
        # CASA writes the reference velocity as -0.0: the same number.
        assert ours["ALTRVAL"] == pytest.approx(theirs["ALTRVAL"], abs=1e-6)
        # exportfits writes the date at the microsecond, wcslib at the second from MJD-OBS.
        assert abs((Time(ours["DATE-OBS"]) - Time(theirs["DATE-OBS"])).sec) < 1e-3
        assert Time(ours["DATE"]).jd == pytest.approx(Time(theirs["DATE"]).jd, abs=0.01)
    ours = fits.getheader(job / "ours" / "image.fits")
    theirs = fits.getheader(job / "tclean" / "image.fits")
    assert (ours["TELESCOP"], ours["OBJECT"], ours["OBSERVER"], ours["BTYPE"]) == (
        "VLA", "3C273", "AO88", "Intensity",
    )  # fmt: skip
    for key in ("BMAJ", "BMIN", "BPA"):
        assert ours[key] == pytest.approx(theirs[key], rel=1e-5), key
    assert ours["RESTFRQ"] == pytest.approx(8.0857303e9, rel=1e-7)
    assert (ours["RADESYS"], ours["EQUINOX"]) == ("FK4", pytest.approx(1979.9))
    versions = software_versions()
    assert ours["ORIGIN"] == f"radio_clean {versions['radio_clean']} casatools {versions['casatools']}"


def test_astropy_reads_the_wcs_without_fixing_it(job):
    """The WCS of every exported and every stored image loads in astropy without a warning."""
    stored = [
        os.path.join(root, name)
        for root, _, names in os.walk(job / "repo" / "images")
        for name in names
        if name.endswith(".fits")
    ]
    assert stored
    for path in [*(job / "ours" / f"{product}.fits" for product in PRODUCTS), *stored]:
        header = fits.getheader(path)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            wcs = WCS(header)
        assert wcs.wcs.specsys == "LSRK", path


def test_casa_reads_telescope_object_beam_and_frequency(job):
    """CASA's importfits + imhead show of our image what they show of tclean's own."""
    from casatasks import casalog, imhead, importfits

    casalog.setlogfile(str(job / "casa.log"))
    try:
        summaries = []
        for source in ("ours", "tclean"):
            imported = str(job / f"imported_{source}.image")
            importfits(fitsimage=str(job / source / "image.fits"), imagename=imported, overwrite=True)
            summaries.append(imhead(imported, mode="list"))
    finally:
        reattach_casa_log(casalog)
    ours, theirs = summaries
    assert (ours["telescope"], ours["object"], ours["observer"]) == ("VLA", "3C273", "AO88")
    for key in ("telescope", "object", "observer", "imtype", "bunit", "equinox"):
        assert ours[key] == theirs[key], key
    for key in ("beammajor", "beamminor", "beampa"):
        assert ours[key]["value"] == pytest.approx(theirs[key]["value"], rel=1e-5), key
    assert ours["restfreq"] == pytest.approx(theirs["restfreq"], rel=1e-12)
    assert ours["crval3"] == pytest.approx(theirs["crval3"], rel=1e-12)
    assert ours["date-obs"] == theirs["date-obs"]


def test_history_says_how_the_file_was_made(job):
    """HISTORY holds versions, every parameter, MS path and fingerprint, repository, collection, dataset."""
    header = fits.getheader(job / "ours" / "image.fits")
    history = _history_lines(header)
    ms = str(job / "3C273XC1.ms")
    with open_repo(str(job / "repo"), collections="images/headers") as butler:
        ref = butler.find_dataset("image", instrument="VLA", field="3C273", band="8085MHz-1ch")
        (observation,) = butler.query_dimension_records("observation", instrument="VLA")
        stored_path = butler.getURI(ref).ospath
    versions = software_versions()
    assert history[0] == "radio_clean START PROVENANCE" and history[-1] == "radio_clean END PROVENANCE"
    for line in (
        f"radio_clean {versions['radio_clean']}: tclean's CLEAN as Butler PipelineTasks",
        f"casatools {versions['casatools']}, casatasks {versions['casatasks']}",
        f"Butler repository: {job / 'repo'}",
        "Collection: images/headers",
        f"Dataset: image, RUN {ref.run}",
        f"Dataset id: {ref.id}",
        "Data ID: instrument=VLA, band=8085MHz-1ch, field=3C273",
        f"Input MS 1: {ms}",
        observation.fingerprint,
        f'vis         = ["{ms}"]',
        'field       = "3C273"',
        "imsize      = [64]",
        'cell        = ["2arcsec"]',
        "niter       = 50",
        'datacolumn  = "data"',
        'deconvolver = "hogbom"',
        "gain        = 0.1",
    ):
        assert line in history, line
    assert observation.ms_path == ms and len(observation.fingerprint) == 64
    # Every tclean parameter the tasks take, each on its own line.
    names = [line.split("=")[0].strip() for line in history if " = " in line]
    assert set(CleanParametersConfig().toDict()) <= set(names)
    # The file stored in the repository says the same, bar what only the registry knows.
    stored = fits.getheader(stored_path)
    exported_cards = {key: header[key] for key in _keys(header) if key != "DATE"}
    stored_cards = {key: stored[key] for key in _keys(stored) if key != "DATE"}
    assert exported_cards == {**stored_cards, "OBSERVER": "AO88"}
    assert np.array_equal(fits.getdata(job / "ours" / "image.fits"), fits.getdata(stored_path))
