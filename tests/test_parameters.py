"""One source of truth for tclean's parameters: defaults and allowed values.

`CleanParametersConfig` holds every default and every range; tclean's own
signature is the reference for the defaults, and `AutoMaskParameters` takes
its defaults and checks from the config, so nothing can drift apart.
"""

import dataclasses

import pytest

from radio_clean.automask import AutoMaskParameters
from radio_clean.casa._synthesis import tclean_defaults
from radio_clean.imaging import read_parameters
from radio_clean.parameters import CleanParametersConfig, ParameterError, parse_parameter


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
