"""One source of truth for tclean's parameters: defaults and allowed values.

`CleanParametersConfig` holds every default and every range; tclean's own
signature is the reference for the defaults, and `AutoMaskParameters` takes
its defaults and checks from the config, so nothing can drift apart.
"""

import dataclasses
import functools
import inspect

import pytest
from astropy.wcs import WCS
from lsst.pex.config import ChoiceField

from radio_clean.automask import AutoMaskParameters
from radio_clean.casa._casatasks import casatasks_package
from radio_clean.casa._synthesis import tclean_defaults
from radio_clean.fits_cards import observation_cards
from radio_clean.imaging import read_parameters
from radio_clean.parameters import CleanParametersConfig, ParameterError, parameter_problem, parse_parameter


def test_every_default_is_tcleans():
    """Each field's default is what tclean's signature gives, read as a value pasted from tclean would be."""
    defaults = tclean_defaults()
    assert set(CleanParametersConfig._fields) <= set(defaults)
    different = {
        name: (field.default, defaults[name])
        for name, field in CleanParametersConfig._fields.items()
        if parse_parameter(name, defaults[name]) != field.default
    }
    assert different == {}
    # Two are spelled differently by tclean and mean the same: a bare number of Jy, [''] for no taper.
    assert (defaults["threshold"], defaults["uvtaper"]) == (0.0, [""])


def test_auto_multithresh_defaults_are_the_configs():
    names = [field.name for field in dataclasses.fields(AutoMaskParameters)]
    config = CleanParametersConfig()
    assert dataclasses.asdict(AutoMaskParameters()) == {name: getattr(config, name) for name in names}
    assert len(names) == 12


# Values outside the range in which tclean's description of the parameter means something.
OUT_OF_RANGE = [
    ("smoothfactor", "0", "it must be above 0", "auto-multithresh: size of the smoothing kernel in beams."),
    ("smoothfactor", "-1", "it must be above 0", "auto-multithresh: size of the smoothing kernel in beams."),
    ("cutthreshold", "1", "it must be at least 0 and below 1",
     "auto-multithresh: the smoothed mask is cut at this fraction of its peak."),
    ("cutthreshold", "-0.01", "it must be at least 0 and below 1",
     "auto-multithresh: the smoothed mask is cut at this fraction of its peak."),
    ("growiterations", "-1", "it must be at least 0",
     "auto-multithresh: most binary-dilation steps of the previous mask (0: no growing)."),
    ("noisethreshold", "-5", "it must be at least 0",
     "auto-multithresh: mask threshold in units of the robust rms (1.4826 MAD) above the median."),
    ("sidelobethreshold", "-3", "it must be at least 0",
     "auto-multithresh: mask threshold in units of the largest PSF sidelobe x the peak residual."),
    ("lownoisethreshold", "-1.5", "it must be at least 0",
     "auto-multithresh: threshold (robust rms) of the region the previous mask may grow into."),
    ("negativethreshold", "-1", "it must be at least 0",
     "auto-multithresh: threshold (robust rms) of the mask of negative features (0: none)."),
    ("minbeamfrac", "nan", "it must be a finite number",
     "auto-multithresh: regions smaller than this fraction of the beam area are pruned (0 or less: no "
     "pruning)."),
    ("minpercentchange", "inf", "it must be a finite number",
     "auto-multithresh: stop masking a channel whose mask changes by less than this percentage, once the "
     "cycle threshold is the threshold (negative: never)."),
    ("pbmask", "1", "it must be at least 0 and below 1",
     "PB level for usemask='pb' (and the auto-multithresh PB mask)."),
]  # fmt: skip


@pytest.mark.parametrize(("name", "value", "rule", "doc"), OUT_OF_RANGE)
def test_out_of_range_auto_multithresh_value_is_refused_up_front(name, value, rule, doc):
    with pytest.raises(ParameterError) as caught:
        read_parameters(None, ["usemask=auto-multithresh", f"{name}={value}"])
    assert str(caught.value) == f"Value '{value}' of tclean parameter '{name}' is not allowed: {rule} ({doc})"
    # The task's own parameters refuse it with the same rule, should anything get past the front door.
    with pytest.raises(ValueError) as caught:
        AutoMaskParameters(**{name: float(value) if name != "growiterations" else int(value)})
    assert str(caught.value).endswith(f"is not allowed: {rule}.")


@pytest.mark.parametrize(
    ("setting", "value"),
    [("smoothfactor=0.5", 0.5), ("minbeamfrac=0", 0.0), ("minbeamfrac=-1", -1.0),
     ("minpercentchange=-1", -1.0), ("cutthreshold=0", 0.0), ("negativethreshold=0", 0.0),
     ("growiterations=0", 0)],
)  # fmt: skip
def test_auto_multithresh_values_tclean_documents_are_taken(setting, value):
    parameters, _ = read_parameters(None, ["usemask=auto-multithresh", setting])
    name = setting.partition("=")[0]
    assert getattr(parameters, name) == value
    assert getattr(AutoMaskParameters(**{name: value}), name) == value


@functools.cache
def _tclean_schema():
    """The schema tclean checks its arguments against (a literal in its ``__call__``)."""
    from casatools.coercetype import coerce

    source = inspect.getsource(type(casatasks_package().tclean).__call__)
    line = next(line.strip() for line in source.splitlines() if line.strip().startswith("schema = {"))
    return eval(line.removeprefix("schema = "), {"_coerce": coerce})


CHOICES = sorted(
    name for name, field in CleanParametersConfig._fields.items() if isinstance(field, ChoiceField)
)


@pytest.mark.parametrize("name", CHOICES)
def test_choices_take_empty_and_none_where_tclean_does(name):
    """'' and None are taken where tclean's own check takes them, and only there.

    tclean's schema refuses None for every choice, and takes '' for datacolumn, veltype and normtype
    (no list of allowed values). tclean reads datacolumn='' as 'corrected' and veltype='' as 'radio'
    (same images, same spectral axis); a mosaic run with normtype='' crashes with a segmentation
    fault, so radio_clean refuses that one '' up front.
    """
    from casatools.typecheck import CasaValidator

    assert len(CHOICES) == 10
    for value in ("", None):
        tclean_takes = CasaValidator().validate({name: value}, {name: _tclean_schema()[name]})
        expected = tclean_takes and (name, value) != ("normtype", "")
        assert (parameter_problem(name, value) is None) == expected, (name, value)
    assert [name for name in CHOICES if parameter_problem(name, "") is None] == ["datacolumn", "veltype"]


def test_empty_choices_as_pasted_from_tclean():
    parameters, _ = read_parameters(None, ["datacolumn=''", 'veltype=""'])
    assert (parameters.datacolumn, parameters.veltype) == ("", "")
    parameters, _ = read_parameters(None, ["datacolumn=", "veltype="])
    assert (parameters.datacolumn, parameters.veltype) == ("", "")
    with pytest.raises(ParameterError) as caught:
        read_parameters(None, ["normtype="])
    assert str(caught.value) == (
        "Value '' of tclean parameter 'normtype' is not allowed: it must be one of 'flatnoise', 'flatsky', "
        "'pbsquare' (Mosaic normalization.)"
    )
    with pytest.raises(ParameterError) as caught:
        read_parameters(None, ["gridder=None"])
    assert "it must be one of 'standard', 'wproject', 'widefield', 'mosaic'" in str(caught.value)


def test_none_is_refused_up_front(tmp_path):
    # YAML's null reaches the config as None: refused with the one sentence, as tclean refuses it.
    params = tmp_path / "params.yaml"
    params.write_text("weighting: null\n")
    with pytest.raises(ParameterError) as caught:
        read_parameters(str(params), [])
    assert str(caught.value) == (
        "Value 'None' of tclean parameter 'weighting' is not allowed: it must be one of 'natural', "
        "'uniform', 'briggs', 'briggsabs', 'briggsbwtaper' (Imaging weights.)"
    )


def test_empty_veltype_is_written_as_radio():
    wcs = WCS(naxis=4)
    wcs.wcs.ctype = ["RA---SIN", "DEC--SIN", "FREQ", "STOKES"]
    wcs.wcs.crval = [187.5, 2.0, 1.4e9, 1.0]
    wcs.wcs.restfrq = 1.420405752e9
    wcs.wcs.specsys = "LSRK"
    cards = {veltype: observation_cards(wcs, telescope="VLA", object_name="X", veltype=veltype)
             for veltype in ("radio", "", "optical")}  # fmt: skip
    assert [str(card) for card in cards[""]] == [str(card) for card in cards["radio"]]
    assert [str(card) for card in cards["optical"]] != [str(card) for card in cards["radio"]]
