"""tclean's imaging parameters as a pex_config Config shared by every CLEAN task.

Field names, meanings and defaults are tclean's (CASA 6.7.5), so a tclean
user's parameters carry over unchanged: ``--set cell=0.5arcsec`` on the
command line, ``parameters.cell: ["0.5arcsec"]`` in a config override. Values
are handed to CASA's own ``ImagerParameters`` as tclean would hand them.

`parse_parameter` takes every form tclean's documentation gives for a
parameter (``imsize=500`` or ``[350,250]``, ``cell=0.5`` for 0.5 arcsec,
``start=5`` as a channel, ``restfreq='1.42GHz'``...) and turns it into the
config value that means the same to CASA.
"""

from __future__ import annotations

__all__ = [
    "MAX_TAYLOR_TERMS",
    "CleanParametersConfig",
    "ParameterError",
    "chunk_start",
    "parameter_default",
    "parameter_problem",
    "parse_parameter",
    "selected_channels",
]

import ast
import math
import os
import re

import astropy.units as u
from lsst.pex.config import ChoiceField, Config, Field, FieldValidationError, ListField

MAX_TAYLOR_TERMS = 3
"""Largest nterms the pipelines have datasets for."""


class ParameterError(ValueError):
    """A parameter name or value a user gave is not acceptable; the message says why."""


class _TextField(Field):
    """A `str` field that also takes the whole numbers tclean takes for it (``start=5``, ``scan=7``).

    Pipeline parameters and ``-c parameters:NAME=VALUE`` reach a config as
    Python literals, so the text ``5`` arrives as the int 5; it is kept as
    the text it was.
    """

    def __init__(self, doc: str, default: str = "", check=None) -> None:
        super().__init__(doc=doc, dtype=str, default=default, check=check)

    def __set__(self, instance, value, at=None, label="assignment"):
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        super().__set__(instance, value, at=at, label=label)


# tclean's choices (casatasks tclean's parameter schema, CASA 6.7.5).
STOKES = (
    "I",
    "Q",
    "U",
    "V",
    "IV",
    "QU",
    "IQ",
    "UV",
    "IQUV",
    "RR",
    "LL",
    "XX",
    "YY",
    "RRLL",
    "XXYY",
    "pseudoI",
)
# tclean's outframes for a cube: REST (a moving source's, specmode=cubesource) and SOURCE fail in its
# image definition.
SPECTRAL_FRAMES = ("LSRK", "LSRD", "BARY", "GEO", "TOPO", "GALACTO", "LGROUP", "CMB")
_DIRECTION_FRAMES = (
    "J2000", "JMEAN", "JTRUE", "APP", "B1950", "B1950_VLA", "BMEAN", "BTRUE", "GALACTIC", "HADEC", "AZEL",
    "AZELSW", "AZELNE", "AZELGEO", "AZELSWGEO", "AZELNEGEO", "JNAT", "ECLIPTIC", "MECLIPTIC", "TECLIPTIC",
    "SUPERGAL", "ITRF", "TOPO", "ICRS",
)  # fmt: skip
_MOVING_SOURCES = (
    "MERCURY",
    "VENUS",
    "MARS",
    "JUPITER",
    "SATURN",
    "URANUS",
    "NEPTUNE",
    "PLUTO",
    "SUN",
    "MOON",
)
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
# CASA's spectral-window selection: ids, id ranges, <n, >n, names or '*', then channels (or
# frequencies) after ':', ranges joined by ';', steps by '^'; items joined by ','.
_SPW_ID = r"(?:\*|\d+(?:~\d+)?|[<>]\d+|[A-Za-z_][\w#*?-]*)"
_FREQUENCY_RANGE = rf"{_NUMBER}\s*(?:[kMGT]?Hz)?\s*~\s*{_NUMBER}\s*[kMGT]?Hz"
_CHANNELS = rf"(?:\d+(?:~\d+)?|[<>]\d+|{_FREQUENCY_RANGE})(?:\^\d+)?"
_SPW_ITEM = rf"(?:{_SPW_ID}(?:;{_SPW_ID})*|{_FREQUENCY_RANGE})?(?::{_CHANNELS}(?:;{_CHANNELS})*)?"
SPW_SYNTAX = re.compile(rf"\s*{_SPW_ITEM}(?:\s*,\s*{_SPW_ITEM})*\s*")
"""The spectral-window selections tclean's ``spw`` takes (and ``:10~50``: channels of every window)."""


def _is_number(text: str) -> bool:
    return re.fullmatch(_NUMBER, text.strip()) is not None


def _is_uv_length(text: str) -> bool:
    return re.fullmatch(rf"\s*{_NUMBER}\s*[kM]?lambda\s*", text) is not None


def _is_integer(text: str) -> bool:
    return re.fullmatch(r"[-+]?\d+", text.strip()) is not None


def _spectral_kind(text: str | None) -> object:
    # start/width: '' (tclean's choice) or a channel number -> "channel"; else the quantity's
    # physical type ("frequency", "speed"...), or None if it is none.
    if text is None or text.strip() == "" or _is_integer(text):
        return "channel"
    try:
        return u.Quantity(text).unit.physical_type
    except (TypeError, ValueError):
        return None


def _spectral_check(text: str | None) -> bool:
    # start/width: '' (tclean's choice), a channel number, a frequency or a velocity.
    return _spectral_kind(text) in ("channel", "frequency", "speed")


# Velocity definitions not linear in frequency: CASA's cube of channels even in them has a tabular axis.
_NONLINEAR_VELTYPES = frozenset({"optical", "z", "beta", "gamma"})


def _direction_check(text: str | None) -> bool:
    # phasecenter: '', a field id, 'FRAME LONG LAT', a moving source, TRACKFIELD or an ephemeris table.
    if text is None or text.strip() == "" or text.strip().isdigit():
        return True
    words = text.split()
    if len(words) == 1:
        return words[0].upper() in (*_MOVING_SOURCES, "TRACKFIELD") or os.path.exists(words[0])
    if len(words) == 3 and words[0].upper() in _DIRECTION_FRAMES:
        return all(_is_casa_angle(word) for word in words[1:])
    return False


def _is_casa_angle(text: str) -> bool:
    # CASA's angle forms (19h30m00, -40d00m00, 13:05:27.2, -049.28.04.458, 5.1rad) are read by its quanta.
    from .casa import casatools

    quanta = casatools.quanta()
    try:
        return bool(quanta.isangle(quanta.quantity(text)))
    except RuntimeError:
        return False
    finally:
        quanta.done()


def _quantity_check(kind: str, *, allow_empty: bool = True, allow_number: bool = False):
    def check(value: str | None) -> bool:
        if value is None or (allow_empty and value == ""):
            return True
        try:
            quantity = u.Quantity(value)
        except (TypeError, ValueError):
            return False
        if quantity.unit == u.dimensionless_unscaled:
            return allow_number
        return quantity.unit.physical_type == kind

    return check


class _Range:
    """A field check that a number is finite and in a range, and can say so in words.

    Parameters
    ----------
    low, high : `float`, optional
        Bounds; `None` for none.
    low_open, high_open : `bool`, optional
        Whether the bound itself is excluded.
    """

    def __init__(
        self,
        low: float | None = None,
        high: float | None = None,
        *,
        low_open: bool = False,
        high_open: bool = False,
    ) -> None:
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open

    def __call__(self, value: float | None) -> bool:
        if value is None:
            return True
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    @property
    def rule(self) -> str:
        """What the value must be, e.g. ``"above 0"`` or ``"from -2 to 2"``."""
        low = None if self.low is None else (f"above {self.low:g}" if self.low_open else f"{self.low:g}")
        high = None if self.high is None else (f"below {self.high:g}" if self.high_open else f"{self.high:g}")
        if low is None and high is None:
            return "a finite number"
        low = low if low is None or self.low_open else f"at least {low}"
        high = high if high is None or self.high_open else f"at most {high}"
        if low is None or high is None:
            return low or high
        if low.startswith("at least") and high.startswith("at most"):
            return f"from {self.low:g} to {self.high:g}"
        return f"{low} and {high}"


_angle = _quantity_check("angle", allow_empty=False)
_angle_or_empty = _quantity_check("angle")
_flux = _quantity_check("spectral flux density", allow_number=True)
_frequency_or_empty = _quantity_check("frequency")


class CleanParametersConfig(Config):
    """tclean's parameters (same names, meanings and defaults)."""

    # Data selection within the field and band of the data ID.
    datacolumn = ChoiceField(
        dtype=str,
        optional=False,
        doc="Visibility column to image; 'corrected' falls back to 'data' when the MS has no CORRECTED_DATA.",
        # tclean's schema takes '' (no list of allowed values) and reads it as 'corrected'.
        allowed={
            "corrected": "CORRECTED_DATA",
            "data": "DATA",
            "model": "MODEL_DATA",
            "": "as 'corrected' (tclean reads '' so)",
        },
        default="corrected",
    )
    timerange = _TextField(doc="CASA time-range selection, e.g. '09:14:0~09:54:0' (tclean timerange).")
    uvrange = _TextField(doc="CASA uv-range selection, e.g. '>1klambda' (tclean uvrange).")
    antenna = _TextField(doc="CASA antenna/baseline selection, e.g. '5&6;7&8' or '!DV14' (tclean antenna).")
    scan = _TextField(doc="CASA scan selection, e.g. '1~5' (tclean scan).")
    observation = _TextField(
        doc="CASA OBSERVATION_ID selection within each MS, e.g. '1~5' (tclean observation)."
    )
    intent = _TextField(doc="CASA scan-intent selection, e.g. 'TARGET_SOURCE' (tclean intent).")
    spw = _TextField(
        doc="Spectral windows and channels in tclean's syntax ('0:10~50', '0,1', '*:5~20', '1.4~1.42GHz'; "
        "also ':10~50' for channels of every window); '' = all. Each image is of one band: of the "
        "windows selected, those of the band in the data ID.",
        check=lambda text: SPW_SYNTAX.fullmatch(text) is not None,
    )

    # Image definition.
    imsize = ListField(
        dtype=int,
        doc="Image size in pixels: [n] or [nx, ny].",
        default=[100],
        minLength=1,
        maxLength=2,
        itemCheck=_Range(0, low_open=True),
    )
    cell = ListField(
        dtype=str,
        doc="Pixel size, e.g. ['0.5arcsec'] or ['1arcsec', '2arcsec'].",
        default=[],
        maxLength=2,
        itemCheck=_angle,
    )
    phasecenter = _TextField(
        doc="Image centre: field id, 'J2000 12h29m06.7 +02d03m08', a moving source ('MOON'), 'TRACKFIELD' "
        "or an ephemeris table; '' = the field's.",
        check=_direction_check,
    )
    stokes = ChoiceField(
        dtype=str,
        optional=False,
        doc="Stokes planes to image.",
        default="I",
        allowed={stokes: f"Stokes/correlation planes {stokes}" for stokes in STOKES},
    )
    projection = Field(dtype=str, doc="Celestial projection (SIN, NCP, ...).", default="SIN")
    specmode = ChoiceField(
        dtype=str,
        optional=False,
        doc="Spectral mode.",
        default="mfs",
        allowed={
            "mfs": "continuum (multi-frequency synthesis)",
            "cont": "same as mfs",
            "cube": "spectral cube in the outframe (Doppler-tracked)",
            "cubedata": "spectral cube in the data's frame, no Doppler tracking",
        },
    )
    nchan = Field(
        dtype=int, doc="Cube channels (-1: all of the selected data).", default=-1, check=_Range(-1)
    )
    start = _TextField(
        doc="Cube first channel: data channel number (5), frequency ('1.4GHz') or velocity ('5km/s'); "
        "'' = the first selected.",
        check=_spectral_check,
    )
    width = _TextField(
        doc="Cube channel width: data channels (2, -2), frequency ('40kHz') or velocity ('10km/s'); "
        "'' = native.",
        check=lambda text: _spectral_check(text) and text.strip() not in ("0", "+0", "-0"),
    )
    outframe = _TextField(
        doc=f"Cube spectral reference frame ({', '.join(SPECTRAL_FRAMES)}, any case; '' = LSRK).",
        default="LSRK",
        check=lambda text: text.strip().upper() in ("", *SPECTRAL_FRAMES),
    )
    veltype = ChoiceField(
        dtype=str,
        optional=False,
        doc="Velocity definition for start/width in velocity.",
        allowed={
            "radio": "radio",
            "optical": "optical",
            "z": "redshift",
            "ratio": "ratio",
            "beta": "beta",
            "gamma": "gamma",
            # tclean's schema takes '' (no list of allowed values) and reads it as 'radio'.
            "": "as 'radio' (tclean reads '' so)",
        },
        default="radio",
    )
    restfreq = ListField(
        dtype=str,
        doc="Rest frequencies for velocities, e.g. ['1.420405752GHz'].",
        default=[],
        itemCheck=_frequency_or_empty,
    )
    interpolation = ChoiceField(
        dtype=str,
        optional=False,
        doc="Spectral regridding of cube channels.",
        allowed={"linear": "linear", "nearest": "nearest neighbour", "cubic": "cubic"},
        default="linear",
    )
    perchanweightdensity = Field(
        dtype=bool, doc="Cube: Briggs/uniform weight density per channel (tclean default True).", default=True
    )
    reffreq = Field(
        dtype=str,
        doc="Reference frequency of the MFS image and of mtmfs Taylor terms; '' = middle.",
        default="",
        check=_frequency_or_empty,
    )

    # Gridding.
    gridder = ChoiceField(
        dtype=str,
        optional=False,
        doc="Gridding/FT machine.",
        allowed={
            "standard": "prolate-spheroidal gridding",
            "wproject": "W-projection",
            "widefield": "W-projection with facets",
            "mosaic": "mosaic (A-projection with the PB)",
        },
        default="standard",
    )
    facets = Field(dtype=int, doc="Facets per side for gridder='widefield'.", default=1, check=_Range(1))
    wprojplanes = Field(
        dtype=int,
        doc="W-projection planes (-1: chosen automatically).",
        default=1,
        check=lambda n: n >= -1 and n != 0,
    )
    vptable = Field(
        dtype=str, doc="Voltage-pattern table for the primary beam ('' = the telescope's).", default=""
    )
    mosweight = Field(dtype=bool, doc="Mosaic: weight each field separately.", default=True)
    pblimit = Field(
        dtype=float, doc="PB level below which images are blanked (negative: do not blank).", default=0.2
    )
    # tclean's schema takes '' here too, but a mosaic run with it crashes (segmentation fault in
    # casatools 6.7.5): refused. None is refused by every choice (optional=False; pex_config's
    # ChoiceField takes None by default), as tclean's schema refuses it.
    normtype = ChoiceField(
        dtype=str,
        optional=False,
        doc="Mosaic normalization.",
        default="flatnoise",
        allowed={"flatnoise": "flat noise", "flatsky": "flat sky", "pbsquare": "PB squared"},
    )
    psfcutoff = Field(
        dtype=float,
        doc="PSF level down to which the restoring beam is fitted.",
        default=0.35,
        check=_Range(0.01, 0.99),
    )

    # Weighting.
    weighting = ChoiceField(
        dtype=str,
        optional=False,
        doc="Imaging weights.",
        allowed={
            "natural": "natural",
            "uniform": "uniform",
            "briggs": "Briggs (robust)",
            "briggsabs": "Briggs absolute (noise)",
            "briggsbwtaper": "Briggs with bandwidth taper",
        },
        default="natural",
    )
    robust = Field(
        dtype=float,
        doc="Briggs robustness, -2 (uniform) to 2 (natural).",
        default=0.5,
        check=_Range(-2.0, 2.0),
    )
    noise = Field(dtype=str, doc="Noise for weighting='briggsabs'.", default="1.0Jy", check=_flux)
    npixels = Field(
        dtype=int,
        doc="Uniform/Briggs weighting cell size in uv pixels (0 = one).",
        default=0,
        check=_Range(0),
    )
    uvtaper = ListField(
        dtype=str,
        doc="Gaussian uv taper: [] or [bmaj, bmin, bpa], e.g. ['10arcsec'] (image-domain FWHM), "
        "['5klambda', '3klambda', '45.0deg'] (uv-domain HWHM) or ['300.0'] (lambda).",
        default=[],
        maxLength=3,
        itemCheck=lambda text: (
            _is_number(text) or _quantity_check("angle", allow_empty=False)(text) or _is_uv_length(text)
        ),
    )

    # Deconvolution.
    deconvolver = ChoiceField(
        dtype=str,
        optional=False,
        doc="Minor-cycle algorithm.",
        allowed={
            "hogbom": "Hogbom CLEAN",
            "clark": "Clark CLEAN",
            "multiscale": "multi-scale CLEAN",
            "mtmfs": "multi-term (Taylor) multi-frequency CLEAN",
        },
        default="hogbom",
    )
    scales = ListField(
        dtype=int, doc="Multi-scale sizes in pixels, e.g. [0, 5, 15].", default=[], itemCheck=_Range(0)
    )
    nterms = Field(
        dtype=int,
        doc=f"Taylor terms for deconvolver='mtmfs' (1 to {MAX_TAYLOR_TERMS}).",
        default=2,
        check=_Range(1, MAX_TAYLOR_TERMS),
    )
    smallscalebias = Field(dtype=float, doc="Multi-scale bias towards small scales.", default=0.0)
    restoringbeam = ListField(
        dtype=str,
        doc="Restoring beam: [] = fitted per plane, ['common'], ['10.0arcsec'] (circular) or "
        "['8.0arcsec', '10.0arcsec', '45deg'].",
        default=[],
        maxLength=3,
        itemCheck=lambda text: text in ("common", "") or _angle(text),
    )
    pbcor = Field(dtype=bool, doc="Also make the primary-beam corrected image.", default=False)

    # Iteration control.
    niter = Field(
        dtype=int,
        doc="Maximum total minor-cycle iterations (0: dirty image only).",
        default=0,
        check=_Range(0),
    )
    gain = Field(dtype=float, doc="Loop gain.", default=0.1, check=_Range(0, 1, low_open=True))
    threshold = Field(
        dtype=str,
        doc="Stopping threshold on the peak residual, e.g. '2mJy' (a number: Jy).",
        default="0.0Jy",
        check=_flux,
    )
    nsigma = Field(
        dtype=float,
        doc="Stopping threshold in units of the robust residual rms (0: off).",
        default=0.0,
        check=_Range(0),
    )
    cycleniter = Field(
        dtype=int, doc="Maximum iterations per minor cycle (-1: niter).", default=-1, check=_Range(-1)
    )
    cyclefactor = Field(
        dtype=float,
        doc="Scales the PSF-sidelobe based cycle threshold.",
        default=1.0,
        check=_Range(0, low_open=True),
    )
    minpsffraction = Field(
        dtype=float,
        doc="Lower limit of the cycle threshold as a fraction of the peak.",
        default=0.05,
        check=_Range(0, 1),
    )
    maxpsffraction = Field(
        dtype=float,
        doc="Upper limit of the cycle threshold as a fraction of the peak.",
        default=0.8,
        check=_Range(0, 1),
    )
    nmajor = Field(
        dtype=int,
        doc="Maximum major cycles after the dirty image (-1: no limit).",
        default=-1,
        check=_Range(-1),
    )

    # Masking.
    usemask = ChoiceField(
        dtype=str,
        optional=False,
        doc="Clean mask.",
        allowed={
            "user": "the mask given (or none: clean everywhere)",
            "pb": "PB above pbmask",
            "auto-multithresh": "automatic (Kepley et al. 2020)",
        },
        default="user",
    )
    mask = _TextField(
        doc="User mask: a mask image ('xxx.mask'), a region file ('xxx.crtf') or a CASA region string "
        "('circle[[40pix,40pix],10pix]')."
    )
    pbmask = Field(
        dtype=float,
        doc="PB level for usemask='pb' (and the auto-multithresh PB mask).",
        default=0.0,
        check=_Range(0, 1, high_open=True),
    )
    # auto-multithresh (Kepley et al. 2020); the ranges are those in which tclean's descriptions
    # of the parameters mean something (radio_clean.automask takes its defaults and checks from here).
    sidelobethreshold = Field(
        dtype=float,
        doc="auto-multithresh: mask threshold in units of the largest PSF sidelobe x the peak residual.",
        default=3.0,
        check=_Range(0),
    )
    noisethreshold = Field(
        dtype=float,
        doc="auto-multithresh: mask threshold in units of the robust rms (1.4826 MAD) above the median.",
        default=5.0,
        check=_Range(0),
    )
    lownoisethreshold = Field(
        dtype=float,
        doc="auto-multithresh: threshold (robust rms) of the region the previous mask may grow into.",
        default=1.5,
        check=_Range(0),
    )
    negativethreshold = Field(
        dtype=float,
        doc="auto-multithresh: threshold (robust rms) of the mask of negative features (0: none).",
        default=0.0,
        check=_Range(0),
    )
    smoothfactor = Field(
        dtype=float,
        doc="auto-multithresh: size of the smoothing kernel in beams.",
        default=1.0,
        check=_Range(0, low_open=True),
    )
    minbeamfrac = Field(
        dtype=float,
        doc="auto-multithresh: regions smaller than this fraction of the beam area are pruned (0 or less: "
        "no pruning).",
        default=0.3,
        check=_Range(),
    )
    cutthreshold = Field(
        dtype=float,
        doc="auto-multithresh: the smoothed mask is cut at this fraction of its peak.",
        default=0.01,
        check=_Range(0, 1, high_open=True),
    )
    growiterations = Field(
        dtype=int,
        doc="auto-multithresh: most binary-dilation steps of the previous mask (0: no growing).",
        default=75,
        check=_Range(0),
    )
    dogrowprune = Field(dtype=bool, doc="auto-multithresh: prune the grown mask.", default=True)
    minpercentchange = Field(
        dtype=float,
        doc="auto-multithresh: stop masking a channel whose mask changes by less than this percentage, once "
        "the cycle threshold is the threshold (negative: never).",
        default=-1.0,
        check=_Range(),
    )
    fastnoise = Field(
        dtype=bool,
        doc="auto-multithresh and nsigma: quick noise from all pixels (False: from those outside the mask).",
        default=True,
    )

    def validate(self) -> None:
        try:
            super().validate()
        except FieldValidationError as err:
            raise ParameterError(_field_message(err)) from err
        if self.niter > 0 and not self.cell:
            raise ParameterError("parameters.cell is required (e.g. cell=0.5arcsec).")
        if self.deconvolver == "multiscale" and not self.scales:
            raise ParameterError("parameters.scales is required with deconvolver=multiscale (e.g. 0,5,15).")
        if self.usemask == "pb" and self.pbmask <= 0:
            raise ParameterError("parameters.pbmask must be above 0 with usemask=pb (e.g. pbmask=0.5).")
        # Combinations tclean refuses (casatasks task_tclean's checks), said as tclean's users need it.
        cube = self.specmode in ("cube", "cubedata")
        if self.deconvolver == "mtmfs" and cube:
            raise ParameterError(
                f"deconvolver=mtmfs does not make cubes (tclean refuses it with specmode={self.specmode}): "
                "use hogbom, clark or multiscale for a cube, or specmode=mfs for Taylor-term images."
            )
        if self.weighting == "briggsbwtaper" and not cube:
            raise ParameterError(
                "weighting=briggsbwtaper is for cubes (specmode=cube or cubedata), as in tclean; "
                "use weighting=briggs for specmode=mfs."
            )
        velocity_given = [
            name for name in ("start", "width") if _spectral_kind(getattr(self, name)) == "speed"
        ]
        if cube and self.veltype in _NONLINEAR_VELTYPES and velocity_given:
            raise ParameterError(
                f"veltype={self.veltype} with {' and '.join(velocity_given)} in velocity makes channels "
                "evenly spaced in that velocity, not in frequency, and radio_clean's images have a linear "
                "frequency axis: give start and width in frequency (e.g. start=1.4131GHz width=50kHz) or "
                "channels, or use veltype=radio."
            )
        if self.weighting == "briggsbwtaper" and self.npixels != 0:
            raise ParameterError(
                f"weighting=briggsbwtaper needs npixels=0 (tclean refuses npixels={self.npixels} with it)."
            )

    def to_tclean(self, channels: tuple[int, int] | None = None) -> dict[str, object]:
        """Return the parameters as the keyword arguments tclean would take.

        Parameters
        ----------
        channels : `tuple` [`int`, `int`], optional
            Output channels ``start`` to ``stop - 1`` of the cube these
            parameters describe: ``start`` and ``nchan`` are changed so that
            tclean makes exactly those channels (a channel chunk).

        Raises
        ------
        ParameterError
            If the chunk cannot be expressed with these start/width values.
        """
        tclean = dict(self.toDict())
        if channels is not None:
            first, stop = channels
            if self.nchan != -1 and stop > self.nchan:
                raise ParameterError(
                    f"Channel chunk {first}~{stop - 1} is beyond the cube's nchan={self.nchan}; "
                    "define the channel chunks for this nchan."
                )
            selected = selected_channels(self.spw)
            tclean.update(
                start=chunk_start(
                    self.start, self.width, first, first_selected=selected[0] if selected else 0
                ),
                nchan=stop - first,
            )
        # CASA reads a channel number only as an int; the text "16" would be taken as no start at all.
        for name in ("start", "width"):
            if re.fullmatch(r"[-+]?\d+", str(tclean[name]).strip()):
                tclean[name] = int(tclean[name])
        return tclean

    @property
    def term_count(self) -> int:
        """Taylor terms of the model and residual (1 unless deconvolver='mtmfs')."""
        return self.nterms if self.deconvolver == "mtmfs" else 1

    @property
    def makes_spectral_index(self) -> bool:
        """Whether restoring makes ``alpha`` and ``alpha.error`` (mtmfs with two Taylor terms or more)."""
        return self.term_count > 1


_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*$")


def selected_channels(spw: str) -> tuple[int, int] | None:
    """Return the first and last data channel that tclean's ``spw`` selects.

    Parameters
    ----------
    spw : `str`
        tclean's ``spw`` (``0:5~50``, ``*:5~20;30~40``, ``:10~50``...).

    Returns
    -------
    channels : `tuple` [`int`, `int`] or `None`
        First and last channel of the selection (a cube of it spans them,
        gaps included); `None` when every channel is selected.

    Raises
    ------
    ParameterError
        If the channels are given as frequencies, by ``<``/``>``, or differ
        between the windows selected.
    """
    if not spw.strip():
        return None
    spans = set()
    for item in spw.split(","):
        _, colon, channels = item.partition(":")
        if not colon:
            spans.add(None)
            continue
        bounds = []
        for channel_range in channels.split(";"):
            match = re.fullmatch(r"\s*(\d+)(?:\s*~\s*(\d+))?(?:\^\d+)?\s*", channel_range)
            if match is None:
                raise ParameterError(
                    f"Channel chunks of a cube need the channels of spw={spw!r} as channel numbers "
                    "(e.g. spw=0:5~50); or set start and nchan."
                )
            bounds += [int(match[1]), int(match[2] or match[1])]
        spans.add((min(bounds), max(bounds)))
    if len(spans) > 1:
        raise ParameterError(
            f"Channel chunks of a cube need the same channels in every window of spw={spw!r}; "
            "or set start and nchan."
        )
    return spans.pop()


def chunk_start(start: str, width: str, offset: int, *, first_selected: int = 0) -> str:
    """Return tclean's ``start`` for the cube channel ``offset`` channels after ``start``.

    Parameters
    ----------
    start, width : `str`
        tclean's ``start`` and ``width`` of the whole cube: channel numbers
        (or empty), or frequencies/velocities with units.
    offset : `int`
        Output channel the chunk starts at.
    first_selected : `int`, optional
        First data channel that ``spw`` selects: where the cube starts
        when ``start`` is empty (tclean's channel ``start`` is a data
        channel number, not one counted from the selection).

    Raises
    ------
    ParameterError
        If ``start`` is a frequency or velocity and ``width`` does not give
        the channel width in compatible units.
    """
    if offset == 0:
        return start
    start_match, width_match = _QUANTITY.match(start or str(first_selected)), _QUANTITY.match(width or "1")
    if start_match is None or width_match is None:
        raise ParameterError(f"Cannot read start={start!r} / width={width!r} as channels or quantities.")
    start_value, start_unit = float(start_match[1]), start_match[2]
    width_value, width_unit = float(width_match[1]), width_match[2]
    if not start_unit and not width_unit:
        if not start and width_value < 0:
            raise ParameterError(
                f"Channel chunks of a cube with width={width!r} need start (the first data channel)."
            )
        return str(int(start_value + offset * width_value))
    if not start_unit or not width_unit:
        raise ParameterError(
            f"Channel chunks of a cube with start={start!r} need width in the same kind of unit "
            f"(e.g. width='24.4kHz' or '5km/s'), not width={width!r}."
        )
    try:
        step = u.Quantity(width_value, width_unit).to_value(start_unit)
    except (u.UnitsError, ValueError):
        raise ParameterError(
            f"width={width!r} cannot be added to start={start!r}: use the same kind of unit."
        ) from None
    return f"{float(start_value + offset * step)!r}{start_unit}"


def _field_message(err: FieldValidationError) -> str:
    return f"parameters.{err.fieldName}: {_reason(err)}"


# Selection parameters tclean takes as a list with one entry per MS; here one value serves every MS.
_SELECTIONS = ("spw", "timerange", "uvrange", "antenna", "scan", "observation", "intent")
# Parameters whose bare numbers mean a quantity in tclean's default unit.
_DEFAULT_UNITS = {"cell": "arcsec", "threshold": "Jy", "noise": "Jy", "restfreq": "Hz"}


def parse_parameter(name: str, value: object) -> object:
    """Turn a tclean-style value into the config value of ``name``.

    ``value`` is the text of ``--set NAME=VALUE`` or the value of a YAML
    ``--params`` file, in any form tclean's documentation gives: quantities
    as tclean writes them (``0.5arcsec``, ``2mJy``); lists comma-separated
    (``scales=0,5,15``) or as pasted from Python (``cell=['0.5arcsec','0.5arcsec']``,
    ``imsize=[350,250]``); one value for a list (``imsize=500``,
    ``restoringbeam=10arcsec``); booleans ``True``/``False``. Bare numbers
    take tclean's default unit (``cell=0.5`` is 0.5 arcsec, ``threshold=0.005``
    is 5 mJy, ``restfreq=1.42e9`` Hz); whole numbers stay channel numbers
    and field ids (``start=5``, ``phasecenter=3``).

    Raises
    ------
    ParameterError
        If ``name`` is not a supported tclean parameter or the value does not
        fit it.
    """
    field = CleanParametersConfig._fields.get(name)
    if field is None:
        raise ParameterError(
            f"Unknown or unsupported tclean parameter '{name}'; supported: "
            f"{', '.join(sorted(CleanParametersConfig._fields))}."
        )
    shown = value if isinstance(value, str) else repr(value)
    pasted = _pasted(value) if isinstance(value, str) else value
    if isinstance(pasted, tuple):
        pasted = list(pasted)
    if name in _SELECTIONS or name == "mask":
        pasted = _one_for_every_ms(name, pasted, shown)
    is_list = isinstance(field, ListField)
    item_type = field.itemtype if is_list else field.dtype
    if is_list:
        items = pasted if isinstance(pasted, list) else _split(pasted)
        if name == "uvtaper":
            # tclean's default, [''], is no taper.
            items = [item for item in items if item != ""]
    elif isinstance(pasted, list) and len(pasted) == 1:
        items = pasted
    elif isinstance(pasted, list):
        raise ParameterError(f"Value {shown} of tclean parameter '{name}' is a list; give one value.")
    else:
        items = [pasted]
    converted = [_convert(name, item_type, item) for item in items]
    if is_list and field.maxLength is not None and len(converted) > field.maxLength:
        raise ParameterError(
            f"Value '{shown}' of tclean parameter '{name}' has {len(converted)} entries, more than "
            f"{field.maxLength} ({field.doc})"
        )
    result = converted if is_list else converted[0]
    # Check the value against the field now, so that the message names the parameter.
    try:
        _check_value(name, result)
    except FieldValidationError as err:
        raise ParameterError(
            f"Value '{shown}' of tclean parameter '{name}' is not allowed: {_reason(err)} ({field.doc})"
        ) from None
    return result


def parameter_default(name: str) -> object:
    """Return tclean's default of parameter ``name`` (that of its `CleanParametersConfig` field)."""
    return CleanParametersConfig._fields[name].default


def parameter_problem(name: str, value: object) -> str | None:
    """Say why ``value`` is not allowed for parameter ``name``, or return `None` if it is.

    The rule is that of the `CleanParametersConfig` field, e.g. ``"it must be
    above 0"`` for ``smoothfactor=0``; code that takes tclean parameters
    outside a config (`radio_clean.automask.AutoMaskParameters`) checks them
    with the same rules.
    """
    try:
        _check_value(name, value)
    except FieldValidationError as err:
        return _reason(err)
    return None


def _check_value(name: str, value: object) -> None:
    config = CleanParametersConfig()
    setattr(config, name, value)
    # Assignment takes None whatever the field; validation refuses it where the field is not optional.
    CleanParametersConfig._fields[name].validate(config)


def _pasted(text: str) -> object:
    # A value pasted from a tclean call: ['0.5arcsec','0.5arcsec'], [350,250], '1.42GHz'.
    text = text.strip()
    if text[:1] not in ("[", "(", "'", '"'):
        return text
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if text[0] in "[(" and text[-1] in ")]":
            return [item.strip().strip("'\"") for item in text[1:-1].split(",") if item.strip()]
        return text


def _split(value: object) -> list[object]:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",")] if value.strip() else []
    return [value]


def _one_for_every_ms(name: str, value: object, shown: str) -> object:
    if not isinstance(value, list):
        return value
    if len(set(map(str, value))) <= 1:
        return value[0] if value else ""
    what = (
        "one mask (an image, region file or region string)"
        if name == "mask"
        else ("one selection for all MeasurementSets")
    )
    raise ParameterError(f"Value {shown} of tclean parameter '{name}' is a list; radio_clean takes {what}.")


def _convert(name: str, item_type: type, item: object) -> object:
    kind = {bool: "True or False", int: "an integer", float: "a number"}.get(item_type, "a string")
    text = item.strip() if isinstance(item, str) else item
    if item_type is bool:
        if isinstance(text, bool):
            return text
        if text not in ("True", "False", "true", "false"):
            raise ParameterError(f"Value '{item}' of tclean parameter '{name}' is not {kind}.")
        return text.lower() == "true"
    if item_type is str:
        if name in _DEFAULT_UNITS and (
            isinstance(text, (int, float)) and not isinstance(text, bool) or _is_number(str(text))
        ):
            number = repr(text) if isinstance(text, float) else str(text)
            return f"{number}{_DEFAULT_UNITS[name]}"
        if isinstance(text, float) and not isinstance(text, bool):
            return repr(text)
        return str(text)
    try:
        if isinstance(text, bool):
            raise ValueError(text)
        number = item_type(text)
        if item_type is int and isinstance(text, float) and number != text:
            raise ValueError(text)
        return number
    except (TypeError, ValueError):
        pass
    if item_type is int and isinstance(text, str) and _is_number(text) and float(text).is_integer():
        return int(float(text))
    raise ParameterError(f"Value '{item}' of tclean parameter '{name}' is not {kind}.") from None


def _reason(err: FieldValidationError) -> str:
    field = CleanParametersConfig._fields.get(err.fieldName)
    check = getattr(field, "check", None) or getattr(field, "itemCheck", None)
    if isinstance(check, _Range):
        return f"it must be {check.rule}"
    if isinstance(field, ChoiceField):
        # pex_config's own message shows '' and None bare ("Value  is not allowed"); say them as tclean would.
        allowed = ", ".join(repr(value) for value in field.allowed if value is not None)
        return f"it must be one of {allowed}"
    lines = str(err).splitlines()
    reason = lines[0].split("failed validation: ", 1)[-1].strip()
    allowed = [line.strip() for line in lines if line.strip().startswith("Allowed values")]
    return f"{reason}; {allowed[0].replace(', None', '')}" if allowed else reason
