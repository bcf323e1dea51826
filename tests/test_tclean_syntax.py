"""tclean's own syntax: every documented form of a parameter means what it means to tclean.

The forms are the examples of casatasks' tclean docstring (CASA 6.7.5). Most
checks read them the way ``radio-clean image --set`` and ``--params`` do; two
image with a pasted form and compare with tclean given that very form.
"""

import os

import numpy as np
import pytest
import yaml
from clean_utils import tree_checksums

from radio_clean.casa import reattach_casa_log
from radio_clean.chunks import output_channel_count
from radio_clean.cli import main
from radio_clean.image import RadioImage
from radio_clean.imaging import image_measurement_sets, read_parameters
from radio_clean.ingest import ingest_measurement_sets
from radio_clean.parameters import CleanParametersConfig, ParameterError
from radio_clean.repo import create_repo, open_repo
from radio_clean.selection import selection_query

# (--set text, parameter, value in the config); the text is each of tclean's documented examples.
DOCUMENTED_FORMS = [
    ("imsize=500", "imsize", [500]),
    ("imsize=[350,250]", "imsize", [350, 250]),
    ("imsize=350,250", "imsize", [350, 250]),
    ("cell=['0.5arcsec','0.5arcsec']", "cell", ["0.5arcsec", "0.5arcsec"]),
    ("cell=['1arcmin', '1arcmin']", "cell", ["1arcmin", "1arcmin"]),
    ("cell='1arcsec'", "cell", ["1arcsec"]),
    ("cell=0.5", "cell", ["0.5arcsec"]),
    ("cell=[0.5,0.5]", "cell", ["0.5arcsec", "0.5arcsec"]),
    ("phasecenter=6", "phasecenter", "6"),
    ("phasecenter='6'", "phasecenter", "6"),
    ("phasecenter=J2000 19h30m00 -40d00m00", "phasecenter", "J2000 19h30m00 -40d00m00"),
    ("phasecenter='J2000 292.5deg  -40.0deg'", "phasecenter", "J2000 292.5deg  -40.0deg"),
    ("phasecenter=J2000 5.105rad  -0.698rad", "phasecenter", "J2000 5.105rad  -0.698rad"),
    ("phasecenter=ICRS 13:05:27.2780 -049.28.04.458", "phasecenter", "ICRS 13:05:27.2780 -049.28.04.458"),
    ("phasecenter=MOON", "phasecenter", "MOON"),
    ("phasecenter=TRACKFIELD", "phasecenter", "TRACKFIELD"),
    ("stokes=IQUV", "stokes", "IQUV"),
    ("stokes=pseudoI", "stokes", "pseudoI"),
    ("stokes=XXYY", "stokes", "XXYY"),
    ("specmode=cont", "specmode", "cont"),
    ("specmode=cubedata", "specmode", "cubedata"),
    ("reffreq=1.5GHz", "reffreq", "1.5GHz"),
    ("nchan=100", "nchan", 100),
    ("start=3", "start", "3"),
    ("start='1.1GHz'", "start", "1.1GHz"),
    ("start='15343km/s'", "start", "15343km/s"),
    ("start=5.0km/s", "start", "5.0km/s"),
    ("start=22.3GHz", "start", "22.3GHz"),
    ("width=2", "width", "2"),
    ("width=-2", "width", "-2"),
    ("width='0.1MHz'", "width", "0.1MHz"),
    ("width=-2.0km/s", "width", "-2.0km/s"),
    ("width=40kHz", "width", "40kHz"),
    ("outframe=bary", "outframe", "bary"),
    ("outframe=LSRK", "outframe", "LSRK"),
    ("restfreq=['1.42GHz']", "restfreq", ["1.42GHz"]),
    ("restfreq='1.42GHz'", "restfreq", ["1.42GHz"]),
    ("restfreq=['1.420405752GHz', '1.4GHz']", "restfreq", ["1.420405752GHz", "1.4GHz"]),
    ("restfreq=1.42e9", "restfreq", ["1.42e9Hz"]),
    ("scales=[0,6,20]", "scales", [0, 6, 20]),
    ("scales=0,5,15", "scales", [0, 5, 15]),
    ("restoringbeam=''", "restoringbeam", []),
    ("restoringbeam=['']", "restoringbeam", [""]),
    ("restoringbeam='10.0arcsec'", "restoringbeam", ["10.0arcsec"]),
    (
        "restoringbeam=['8.0arcsec','10.0arcsec','45deg']",
        "restoringbeam",
        ["8.0arcsec", "10.0arcsec", "45deg"],
    ),
    ("restoringbeam='common'", "restoringbeam", ["common"]),
    ("uvtaper=['5klambda']", "uvtaper", ["5klambda"]),
    ("uvtaper=['5klambda','3klambda','45.0deg']", "uvtaper", ["5klambda", "3klambda", "45.0deg"]),
    ("uvtaper=['50arcsec','30arcsec','30.0deg']", "uvtaper", ["50arcsec", "30arcsec", "30.0deg"]),
    ("uvtaper=['10arcsec']", "uvtaper", ["10arcsec"]),
    ("uvtaper=['300.0']", "uvtaper", ["300.0"]),
    ("threshold=0.005", "threshold", "0.005Jy"),
    ("threshold='5.0mJy'", "threshold", "5.0mJy"),
    ("noise=0.1", "noise", "0.1Jy"),
    ("mask='circle[[40pix,40pix],10pix]'", "mask", "circle[[40pix,40pix],10pix]"),
    ("spw='0~2,4'", "spw", "0~2,4"),
    ("spw='0:5~61'", "spw", "0:5~61"),
    ("spw='<2'", "spw", "<2"),
    ("spw='0,10,3:3~45'", "spw", "0,10,3:3~45"),
    ("spw='0~2:2~6'", "spw", "0~2:2~6"),
    ("spw='3:10~20;50~60'", "spw", "3:10~20;50~60"),
    ("spw='3:10~20;50~60,4:0~30'", "spw", "3:10~20;50~60,4:0~30"),
    ("spw='0:0~10,1:20~30,2:1;2;3'", "spw", "0:0~10,1:20~30,2:1;2;3"),
    ("spw='1~4;6:15~48'", "spw", "1~4;6:15~48"),
    ("spw=*:5~20", "spw", "*:5~20"),
    ("spw=1.4~1.42GHz", "spw", "1.4~1.42GHz"),
    ("spw=*:1.412~1.414GHz", "spw", "*:1.412~1.414GHz"),
    ("spw=:10~50", "spw", ":10~50"),
    ("timerange='2026/01/02/09:14:0~2026/01/02/09:54'", "timerange", "2026/01/02/09:14:0~2026/01/02/09:54"),
    ("timerange='09:14:0~09:54:0'", "timerange", "09:14:0~09:54:0"),
    ("timerange='> 10:24:00'", "timerange", "> 10:24:00"),
    ("uvrange='0~1000klambda'", "uvrange", "0~1000klambda"),
    ("uvrange='> 4klambda'", "uvrange", "> 4klambda"),
    ("antenna='5&6;7&8'", "antenna", "5&6;7&8"),
    ("antenna='VA05&VA06'", "antenna", "VA05&VA06"),
    ("antenna=5", "antenna", "5"),
    ("antenna='!DV14'", "antenna", "!DV14"),
    ("scan='1~5'", "scan", "1~5"),
    ("scan=7", "scan", "7"),
    ("observation='1~5'", "observation", "1~5"),
    ("observation=1", "observation", "1"),
    ("intent='TARGET_SOURCE1,TARGET_SOURCE2'", "intent", "TARGET_SOURCE1,TARGET_SOURCE2"),
    ("intent='TARGET_POINTING*'", "intent", "TARGET_POINTING*"),
]

FIELD_FORMS = [
    ("field='0~2'", ["0~2"]),
    ("field='0,4,5~7'", ["0", "4", "5~7"]),
    ("field='3C286,3C295'", ["3C286", "3C295"]),
    ("field='3,4C*'", ["3", "4C*"]),
    ("field=3C273", ["3C273"]),
]


@pytest.mark.parametrize(("setting", "name", "value"), DOCUMENTED_FORMS)
def test_documented_form_is_read_as_tclean_means_it(setting, name, value):
    parameters, _ = read_parameters(None, [setting])
    assert getattr(parameters, name) == value


@pytest.mark.parametrize(("setting", "fields"), FIELD_FORMS)
def test_field_forms(setting, fields):
    assert read_parameters(None, [setting])[1] == fields


def test_yaml_file_takes_typed_values(tmp_path):
    """A --params file as a tclean user writes it: numbers, lists and strings as in a tclean call."""
    path = tmp_path / "params.yaml"
    path.write_text(
        yaml.safe_dump(
            dict(
                imsize=[350, 250],
                cell=0.5,
                phasecenter=3,
                specmode="cube",
                start=5,
                width=2,
                nchan=10,
                restfreq="1.42GHz",
                threshold=0.005,
                scales=[0, 6, 20],
                deconvolver="multiscale",
                field=[0, "3C273"],
                spw="0:10~50",
                scan=7,
                observation=0,
                pbcor=True,
            )
        )
    )
    parameters, fields = read_parameters(str(path), [])
    assert (parameters.imsize, parameters.cell, parameters.phasecenter) == ([350, 250], ["0.5arcsec"], "3")
    assert (parameters.start, parameters.width, parameters.restfreq) == ("5", "2", ["1.42GHz"])
    assert (parameters.threshold, parameters.scales, parameters.pbcor) == ("0.005Jy", [0, 6, 20], True)
    assert (parameters.spw, parameters.scan, parameters.observation) == ("0:10~50", "7", "0")
    assert fields == ["0", "3C273"]


def test_channel_numbers_reach_casa_as_numbers():
    """A channel start reaches CASA as an int (the text "5" it ignores); a chunk adds its offset."""
    parameters, _ = read_parameters(None, ["specmode=cube", "start=5", "width=2", "nchan=20", "spw=0:5~50"])
    assert parameters.to_tclean()["start"] == 5
    assert parameters.to_tclean()["width"] == 2
    assert parameters.to_tclean((6, 12))["start"] == 17
    assert parameters.to_tclean((6, 12))["nchan"] == 6


# Channels of NGC5921's 63-channel window that tclean makes with nchan=-1 (measured with tclean,
# CASA 6.7.5): an empty start begins at the first selected channel; a channel start is a data channel
# and the cube goes on to the end of the window.
CHANNEL_COUNTS = [
    ([], 63),
    (["spw=0:5~50"], 46),
    (["spw=:5~50"], 46),
    (["spw=0:5~20;30~50"], 46),
    (["spw=0:5~50", "width=2"], 23),
    (["spw=0:5~50", "width=3"], 15),
    (["spw=0:5~50", "start=10"], 53),
    (["spw=0:5~50", "start=2"], 61),
    (["spw=0:5~50", "start=10", "width=2"], 26),
    (["width=2"], 31),
]


@pytest.mark.parametrize(("settings", "count"), CHANNEL_COUNTS)
def test_cube_channel_count_is_tcleans(settings, count):
    parameters, _ = read_parameters(None, ["specmode=cube", *settings])
    assert output_channel_count(parameters, 63) == count


def test_chunk_of_a_selection_starts_at_its_data_channel():
    """The chunk at output channel 12 of spw=0:5~50 is data channel 17 (the bug: it was 12)."""
    parameters, _ = read_parameters(None, ["specmode=cube", "spw=0:5~50"])
    assert parameters.to_tclean((0, 12))["start"] == ""
    assert parameters.to_tclean((12, 24)) | {} == parameters.to_tclean((12, 24))
    assert parameters.to_tclean((12, 24))["start"] == 17


BAD_VALUES = [
    ("cell=abc", "Value 'abc' of tclean parameter 'cell' is not allowed: Item at position 0 is not a valid "
     "value: abc (Pixel size, e.g. ['0.5arcsec'] or ['1arcsec', '2arcsec'].)"),
    ("start=5.5", "Value '5.5' of tclean parameter 'start' is not allowed: Value 5.5 is not a valid value "
     "(Cube first channel: data channel number (5), frequency ('1.4GHz') or velocity ('5km/s'); "
     "'' = the first selected.)"),
    ("width=0", "Value '0' of tclean parameter 'width' is not allowed: Value 0 is not a valid value "
     "(Cube channel width: data channels (2, -2), frequency ('40kHz') or velocity ('10km/s'); '' = native.)"),
    ("spw=0:a~b", "Value '0:a~b' of tclean parameter 'spw' is not allowed: Value 0:a~b is not a valid value "
     "(Spectral windows and channels in tclean's syntax ('0:10~50', '0,1', '*:5~20', '1.4~1.42GHz'; also "
     "':10~50' for channels of every window); '' = all. Each image is of one band: of the windows selected, "
     "those of the band in the data ID.)"),
    ("spw=['0','0~3']", "Value ['0','0~3'] of tclean parameter 'spw' is a list; radio_clean takes one "
     "selection for all MeasurementSets."),
    ("phasecenter=J2000 19h30m00", "Value 'J2000 19h30m00' of tclean parameter 'phasecenter' is not "
     "allowed: Value J2000 19h30m00 is not a valid value (Image centre: field id, 'J2000 12h29m06.7 "
     "+02d03m08', a moving source ('MOON'), 'TRACKFIELD' or an ephemeris table; '' = the field's.)"),
    ("outframe=XYZ", "Value 'XYZ' of tclean parameter 'outframe' is not allowed: Value XYZ is not a valid "
     "value (Cube spectral reference frame (LSRK, LSRD, BARY, GEO, TOPO, GALACTO, LGROUP, CMB, any case; "
     "'' = LSRK).)"),
    ("outframe=SOURCE", "Value 'SOURCE' of tclean parameter 'outframe' is not allowed: Value SOURCE is not a "
     "valid value (Cube spectral reference frame (LSRK, LSRD, BARY, GEO, TOPO, GALACTO, LGROUP, CMB, any "
     "case; '' = LSRK).)"),
    ("imsize=[100,100,100]", "Value '[100,100,100]' of tclean parameter 'imsize' has 3 entries, more than 2 "
     "(Image size in pixels: [n] or [nx, ny].)"),
    ("imsize=100.5", "Value '100.5' of tclean parameter 'imsize' is not an integer."),
    ("threshold=3arcsec", "Value '3arcsec' of tclean parameter 'threshold' is not allowed: Value 3arcsec is "
     "not a valid value (Stopping threshold on the peak residual, e.g. '2mJy' (a number: Jy).)"),
    ("field=0,,1", "Value '0,,1' of tclean parameter 'field' has an empty entry (e.g. field=0~2,3C286)."),
    ("mask=['a.mask','b.mask']", "Value ['a.mask','b.mask'] of tclean parameter 'mask' is a list; "
     "radio_clean takes one mask (an image, region file or region string)."),
]  # fmt: skip


@pytest.mark.parametrize(("setting", "sentence"), BAD_VALUES)
def test_bad_value_is_one_sentence(setting, sentence):
    with pytest.raises(ParameterError) as caught:
        read_parameters(None, [setting])
    assert str(caught.value) == sentence


REFUSED_COMBINATIONS = [
    (["specmode=cube", "deconvolver=mtmfs"], "deconvolver=mtmfs does not make cubes (tclean refuses it with "
     "specmode=cube): use hogbom, clark or multiscale for a cube, or specmode=mfs for Taylor-term images."),
    (["specmode=cubedata", "deconvolver=mtmfs", "nterms=3"], "deconvolver=mtmfs does not make cubes (tclean "
     "refuses it with specmode=cubedata): use hogbom, clark or multiscale for a cube, or specmode=mfs for "
     "Taylor-term images."),
    (["weighting=briggsbwtaper"], "weighting=briggsbwtaper is for cubes (specmode=cube or cubedata), as in "
     "tclean; use weighting=briggs for specmode=mfs."),
    (["specmode=cube", "veltype=optical", "start=1400km/s", "width=20km/s"], "veltype=optical with start "
     "and width in velocity makes channels evenly spaced in that velocity, not in frequency, and "
     "radio_clean's images have a linear frequency axis: give start and width in frequency (e.g. "
     "start=1.4131GHz width=50kHz) or channels, or use veltype=radio."),
    (["specmode=cubedata", "veltype=z", "start=0.1km/s"], "veltype=z with start in velocity makes channels "
     "evenly spaced in that velocity, not in frequency, and radio_clean's images have a linear frequency "
     "axis: give start and width in frequency (e.g. start=1.4131GHz width=50kHz) or channels, or use "
     "veltype=radio."),
    (["specmode=cube", "weighting=briggsbwtaper", "npixels=2"], "weighting=briggsbwtaper needs npixels=0 "
     "(tclean refuses npixels=2 with it)."),
]  # fmt: skip


@pytest.mark.parametrize(("settings", "sentence"), REFUSED_COMBINATIONS)
def test_combination_tclean_refuses_is_one_sentence(settings, sentence):
    """What tclean refuses (it logs a warning and returns nothing) is refused before any work."""
    with pytest.raises(ParameterError) as caught:
        read_parameters(None, settings)
    assert str(caught.value) == sentence


CONTINUUM_PIPELINE = os.path.join(os.path.dirname(__file__), os.pardir, "pipelines", "ContinuumImaging.yaml")


def test_clean_reads_parameters_as_image_does(demo_repo, tmp_path, capsys):
    """``radio-clean clean -c parameters:NAME=VALUE`` takes tclean's forms; a bad one is one sentence."""
    repo = str(tmp_path / "repo")
    clean = ["clean", repo, "-p", CONTINUUM_PIPELINE, "-c", "parameters:datacolumn=data"]
    refused = {
        "parameters:imsize=abc": "Value 'abc' of tclean parameter 'imsize' is not an integer.",
        "parameters:weighting=briggsbwtaper": "weighting=briggsbwtaper is for cubes (specmode=cube or "
        "cubedata), as in tclean; use weighting=briggs for specmode=mfs.",
    }
    for number, (setting, sentence) in enumerate(refused.items()):
        assert main([*clean, "-o", f"refused/{number}", "-c", setting]) != 0
        error = capsys.readouterr().err.strip()
        assert error.endswith(sentence), error
        assert "Traceback" not in error
    # imsize=48 and cell=2 as tclean takes them (pex would want [48] and ['2arcsec']).
    settings = ["-c", "parameters:imsize=48", "-c", "parameters:cell=2", "-c", "parameters:niter=5"]
    assert main([*clean, "-o", "tclean/forms", *settings]) == 0
    with open_repo(repo) as butler:
        image = butler.get(
            "image", collections="tclean/forms", instrument="VLA", field="3C273", band="8085MHz-1ch"
        )
        # Nothing was kept of the refused runs.
        assert not butler.collections.query("refused/*")
    assert image.shape[-2:] == (48, 48)
    assert image.wcs.wcs.cdelt[1] * 3600 == pytest.approx(2.0)


@pytest.fixture
def demo_repo(ms_3c273, tmp_path):
    """A repository with the 3C273 demo MS (field 3C273 = FIELD_ID 0, spw 0 of band 8085MHz-1ch)."""
    create_repo(str(tmp_path / "repo")).close()
    butler = open_repo(str(tmp_path / "repo"), writeable=True)
    ingest_measurement_sets(butler, [ms_3c273], staging_root=str(tmp_path / "repo"))
    yield butler
    butler.close()


def _query(butler, *settings):
    parameters, fields = read_parameters(None, list(settings))
    observations = [record.id for record in butler.registry.queryDimensionRecords("observation")]
    return selection_query(butler, observations, fields, parameters)


def test_selection_by_id_name_pattern_and_frequency(demo_repo):
    for field in ("0", "0~2", "3C273", "3C*", "0,3C273"):
        assert _query(demo_repo, f"field={field}") == (" AND field IN ('3C273')", None)
    for spw in ("0", "0:0~0", "*", ":0~0", "<1", "8.0~8.2GHz", "*:8.0~8.2GHz"):
        assert _query(demo_repo, f"spw={spw}") == ("", {"8085MHz-1ch"})
    assert _query(demo_repo, "scan=1", "antenna=1&2", "uvrange=>1klambda", "observation=0") == ("", None)


BAD_SELECTIONS = [
    ("field=5", "field='5' selects nothing in the MeasurementSets; they have 3C273 (field 0)."),
    ("field=NGC*", "field='NGC*' selects nothing in the MeasurementSets; they have 3C273 (field 0)."),
    ("spw=3", "spw='3' selects nothing in the MeasurementSets; they have 8085MHz-1ch (spw 0)."),
    ("spw=1.4~1.42GHz", "spw='1.4~1.42GHz' selects nothing in the MeasurementSets; they have 8085MHz-1ch "
     "(spw 0)."),
    ("antenna=VA99", "antenna='VA99' cannot be used: Antenna Expression: No match found for token(s) "
     "\"VA99\"."),
    ("timerange=garbage", "timerange='garbage' cannot be used: MSSelection time error: Parse error at or "
     "near token 'g' (near char. 1 in string \"garbage\")."),
]  # fmt: skip


@pytest.mark.parametrize(("setting", "sentence"), BAD_SELECTIONS)
def test_bad_selection_is_one_sentence(demo_repo, setting, sentence):
    with pytest.raises(ParameterError) as caught:
        _query(demo_repo, setting)
    assert str(caught.value) == sentence


def test_pasted_forms_image_as_tclean(ms_3c273, tmp_path, monkeypatch):
    """cell=0.5 (arcsec), field=0 (an id) and spw='0:0~0' give tclean's dirty image with those very values."""
    from casatasks import casalog, tclean

    monkeypatch.chdir(tmp_path)
    settings = ["imsize=64", "cell=0.5", "field=0", "spw='0:0~0'"]
    before = tree_checksums(ms_3c273)
    parameters, fields = read_parameters(None, settings)
    image_measurement_sets(
        [ms_3c273], repo=str(tmp_path / "repo"), export_dir=str(tmp_path / "out"), parameters=parameters,
        fields=fields,
    )  # fmt: skip
    assert tree_checksums(ms_3c273) == before
    try:
        tclean(
            vis=ms_3c273, imagename=str(tmp_path / "tclean" / "img"), imsize=64, cell=0.5, field="0",
            spw="0:0~0",
        )  # fmt: skip
    finally:
        reattach_casa_log(casalog)
    ours = RadioImage.from_fits(str(tmp_path / "out" / "image.fits"))
    theirs = RadioImage.from_fits(_export_fits(tmp_path / "tclean" / "img.image", tmp_path / "theirs.fits"))
    assert ours.shape == theirs.shape == (1, 1, 64, 64)
    np.testing.assert_array_equal(ours.pixels, theirs.pixels)
    assert abs(ours.wcs.wcs.cdelt[1] * 3600 - 0.5) < 1e-12


def _export_fits(casa_image, fits_path):
    from casatasks import casalog, exportfits

    try:
        exportfits(imagename=str(casa_image), fitsimage=str(fits_path))
    finally:
        reattach_casa_log(casalog)
    return str(fits_path)


def test_chunked_cube_of_a_channel_selection_is_tcleans(ngc5921_line_ms, tmp_path, monkeypatch):
    """spw=0:5~50 cut into two chunks gives tclean's 46-channel cube (it failed at export before)."""
    from casatasks import casalog, tclean

    monkeypatch.chdir(tmp_path)
    settings = ["imsize=32", "cell=15arcsec", "specmode=cube", "spw=0:5~50", "datacolumn=data"]
    parameters, _ = read_parameters(None, settings)
    image_measurement_sets(
        [ngc5921_line_ms], repo=str(tmp_path / "repo"), export_dir=str(tmp_path / "out"),
        parameters=parameters, jobs=1, chunk_channels=23,
    )  # fmt: skip
    try:
        tclean(
            vis=ngc5921_line_ms, imagename=str(tmp_path / "tclean" / "img"), imsize=32, cell="15arcsec",
            specmode="cube", spw="0:5~50", datacolumn="data",
        )  # fmt: skip
    finally:
        reattach_casa_log(casalog)
    ours = RadioImage.from_fits(str(tmp_path / "out" / "image.fits"))
    theirs = RadioImage.from_fits(_export_fits(tmp_path / "tclean" / "img.image", tmp_path / "theirs.fits"))
    assert ours.shape == theirs.shape == (1, 46, 32, 32)
    np.testing.assert_allclose(ours.frequencies, theirs.frequencies, rtol=1e-12)
    peak = np.abs(theirs.pixels).max()
    assert np.abs(ours.pixels - theirs.pixels).max() <= 1e-6 * peak


def test_defaults_are_unchanged():
    """Reading nothing gives tclean's defaults (the config's), so unset parameters mean the same."""
    assert read_parameters(None, [])[0].toDict() == CleanParametersConfig().toDict()
    assert os.path.isabs(read_parameters(None, [f"mask={__file__}"])[0].mask)
