"""tclean's imaging parameters as a pex_config Config shared by every CLEAN task.

Field names, meanings and defaults are tclean's (CASA 6.7.5), so a tclean
user's parameters carry over unchanged: ``--set cell=0.5arcsec`` on the
command line, ``parameters.cell: ["0.5arcsec"]`` in a config override. Values
are handed to CASA's own ``ImagerParameters`` as tclean would hand them.
"""

from __future__ import annotations

__all__ = [
    "MAX_TAYLOR_TERMS",
    "CleanParametersConfig",
    "ParameterError",
    "chunk_start",
    "parse_parameter",
]

import re

import astropy.units as u
from lsst.pex.config import ChoiceField, Config, Field, FieldValidationError, ListField

MAX_TAYLOR_TERMS = 3
"""Largest nterms the pipelines have datasets for."""


class ParameterError(ValueError):
    """A parameter name or value a user gave is not acceptable; the message says why."""


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


_angle = _quantity_check("angle", allow_empty=False)
_angle_or_empty = _quantity_check("angle")
_flux = _quantity_check("spectral flux density", allow_number=True)
_frequency_or_empty = _quantity_check("frequency")


class CleanParametersConfig(Config):
    """tclean's parameters (same names, meanings and defaults)."""

    # Data selection within the field and band of the data ID.
    datacolumn = ChoiceField(
        dtype=str,
        doc="Visibility column to image; 'corrected' falls back to 'data' when the MS has no CORRECTED_DATA.",
        allowed={"corrected": "CORRECTED_DATA", "data": "DATA", "model": "MODEL_DATA"},
        default="corrected",
    )
    timerange = Field(dtype=str, doc="CASA time-range selection (tclean timerange).", default="")
    uvrange = Field(dtype=str, doc="CASA uv-range selection, e.g. '>1klambda' (tclean uvrange).", default="")
    antenna = Field(dtype=str, doc="CASA antenna/baseline selection (tclean antenna).", default="")
    scan = Field(dtype=str, doc="CASA scan selection (tclean scan).", default="")
    intent = Field(dtype=str, doc="CASA scan-intent selection (tclean intent).", default="")
    spw = Field(
        dtype=str,
        doc="Channels of the band to image, in tclean's syntax after the window id: ':10~50' or "
        "':5~20;30~60'; '' = all. The spectral windows themselves are those of the band in the data ID.",
        default="",
        check=lambda text: re.fullmatch(r"(:\d+(~\d+)?(;\d+(~\d+)?)*)?", text) is not None,
    )

    # Image definition.
    imsize = ListField(
        dtype=int,
        doc="Image size in pixels: [n] or [nx, ny].",
        default=[100],
        minLength=1,
        maxLength=2,
        itemCheck=lambda n: n > 0,
    )
    cell = ListField(
        dtype=str,
        doc="Pixel size, e.g. ['0.5arcsec'] or ['1arcsec', '2arcsec'].",
        default=[],
        maxLength=2,
        itemCheck=_angle,
    )
    phasecenter = Field(
        dtype=str, doc="Image centre: field id or 'J2000 12h29m06.7 +02d03m08'; '' = the field's.", default=""
    )
    stokes = Field(dtype=str, doc="Stokes planes to image, e.g. 'I', 'IV', 'IQUV'.", default="I")
    projection = Field(dtype=str, doc="Celestial projection (SIN, NCP, ...).", default="SIN")
    specmode = ChoiceField(
        dtype=str,
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
        dtype=int, doc="Cube channels (-1: all of the selected data).", default=-1, check=lambda n: n >= -1
    )
    start = Field(
        dtype=str, doc="Cube first channel: channel number, frequency or velocity; '' = first.", default=""
    )
    width = Field(
        dtype=str, doc="Cube channel width: channels, frequency or velocity; '' = native.", default=""
    )
    outframe = Field(dtype=str, doc="Cube spectral reference frame (LSRK, BARY, TOPO...).", default="LSRK")
    veltype = ChoiceField(
        dtype=str,
        doc="Velocity definition for start/width in velocity.",
        allowed={
            "radio": "radio",
            "optical": "optical",
            "z": "redshift",
            "ratio": "ratio",
            "beta": "beta",
            "gamma": "gamma",
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
        doc="Gridding/FT machine.",
        allowed={
            "standard": "prolate-spheroidal gridding",
            "wproject": "W-projection",
            "widefield": "W-projection with facets",
            "mosaic": "mosaic (A-projection with the PB)",
        },
        default="standard",
    )
    facets = Field(
        dtype=int, doc="Facets per side for gridder='widefield'.", default=1, check=lambda n: n >= 1
    )
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
    normtype = ChoiceField(
        dtype=str,
        doc="Mosaic normalization.",
        default="flatnoise",
        allowed={"flatnoise": "flat noise", "flatsky": "flat sky", "pbsquare": "PB squared"},
    )
    psfcutoff = Field(
        dtype=float,
        doc="PSF level down to which the restoring beam is fitted.",
        default=0.35,
        check=lambda x: 0.01 <= x <= 0.99,
    )

    # Weighting.
    weighting = ChoiceField(
        dtype=str,
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
        check=lambda x: -2.0 <= x <= 2.0,
    )
    noise = Field(dtype=str, doc="Noise for weighting='briggsabs'.", default="1.0Jy", check=_flux)
    npixels = Field(
        dtype=int,
        doc="Uniform/Briggs weighting cell size in uv pixels (0 = one).",
        default=0,
        check=lambda n: n >= 0,
    )
    uvtaper = ListField(
        dtype=str,
        doc="Gaussian uv taper: [] or [bmaj, bmin, bpa], e.g. ['2arcsec'].",
        default=[],
        maxLength=3,
    )

    # Deconvolution.
    deconvolver = ChoiceField(
        dtype=str,
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
        dtype=int, doc="Multi-scale sizes in pixels, e.g. [0, 5, 15].", default=[], itemCheck=lambda n: n >= 0
    )
    nterms = Field(
        dtype=int,
        doc=f"Taylor terms for deconvolver='mtmfs' (1 to {MAX_TAYLOR_TERMS}).",
        default=2,
        check=lambda n: 1 <= n <= MAX_TAYLOR_TERMS,
    )
    smallscalebias = Field(dtype=float, doc="Multi-scale bias towards small scales.", default=0.0)
    restoringbeam = ListField(
        dtype=str, doc="Restoring beam: [] = fitted, ['common'], or ['1arcsec'...].", default=[], maxLength=3
    )
    pbcor = Field(dtype=bool, doc="Also make the primary-beam corrected image.", default=False)

    # Iteration control.
    niter = Field(
        dtype=int,
        doc="Maximum total minor-cycle iterations (0: dirty image only).",
        default=0,
        check=lambda n: n >= 0,
    )
    gain = Field(dtype=float, doc="Loop gain.", default=0.1, check=lambda x: 0 < x <= 1)
    threshold = Field(
        dtype=str, doc="Stopping threshold on the peak residual, e.g. '2mJy'.", default="0.0Jy", check=_flux
    )
    nsigma = Field(
        dtype=float,
        doc="Stopping threshold in units of the robust residual rms (0: off).",
        default=0.0,
        check=lambda x: x >= 0,
    )
    cycleniter = Field(
        dtype=int, doc="Maximum iterations per minor cycle (-1: niter).", default=-1, check=lambda n: n >= -1
    )
    cyclefactor = Field(
        dtype=float, doc="Scales the PSF-sidelobe based cycle threshold.", default=1.0, check=lambda x: x > 0
    )
    minpsffraction = Field(
        dtype=float,
        doc="Lower limit of the cycle threshold as a fraction of the peak.",
        default=0.05,
        check=lambda x: 0 <= x <= 1,
    )
    maxpsffraction = Field(
        dtype=float,
        doc="Upper limit of the cycle threshold as a fraction of the peak.",
        default=0.8,
        check=lambda x: 0 <= x <= 1,
    )
    nmajor = Field(
        dtype=int,
        doc="Maximum major cycles after the dirty image (-1: no limit).",
        default=-1,
        check=lambda n: n >= -1,
    )

    # Masking.
    usemask = ChoiceField(
        dtype=str,
        doc="Clean mask.",
        allowed={
            "user": "the mask given (or none: clean everywhere)",
            "pb": "PB above pbmask",
            "auto-multithresh": "automatic (Kepley et al. 2020)",
        },
        default="user",
    )
    mask = Field(dtype=str, doc="User mask: a CASA region file/text or a mask image path.", default="")
    pbmask = Field(
        dtype=float,
        doc="PB level for usemask='pb' (and the auto-multithresh PB mask).",
        default=0.0,
        check=lambda x: 0 <= x < 1,
    )
    sidelobethreshold = Field(dtype=float, doc="auto-multithresh: x PSF sidelobe level x peak.", default=3.0)
    noisethreshold = Field(dtype=float, doc="auto-multithresh: x robust rms.", default=5.0)
    lownoisethreshold = Field(dtype=float, doc="auto-multithresh: x robust rms, for growing.", default=1.5)
    negativethreshold = Field(
        dtype=float, doc="auto-multithresh: negative mask threshold (0: off).", default=0.0
    )
    smoothfactor = Field(dtype=float, doc="auto-multithresh: smoothing kernel in beams.", default=1.0)
    minbeamfrac = Field(dtype=float, doc="auto-multithresh: smallest region kept, in beams.", default=0.3)
    cutthreshold = Field(dtype=float, doc="auto-multithresh: cut of the smoothed mask.", default=0.01)
    growiterations = Field(dtype=int, doc="auto-multithresh: binary-dilation iterations.", default=75)
    dogrowprune = Field(dtype=bool, doc="auto-multithresh: prune the grown mask.", default=True)
    minpercentchange = Field(
        dtype=float, doc="auto-multithresh: stop masking a plane below this change.", default=-1.0
    )
    fastnoise = Field(dtype=bool, doc="auto-multithresh: quick (MAD) noise estimate.", default=True)

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
            tclean.update(start=chunk_start(self.start, self.width, first), nchan=stop - first)
        # CASA reads a channel number only as an int; the text "16" would be taken as no start at all.
        for name in ("start", "width"):
            if re.fullmatch(r"[-+]?\d+", str(tclean[name]).strip()):
                tclean[name] = int(tclean[name])
        return tclean

    @property
    def term_count(self) -> int:
        """Taylor terms of the model and residual (1 unless deconvolver='mtmfs')."""
        return self.nterms if self.deconvolver == "mtmfs" else 1


_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*$")


def chunk_start(start: str, width: str, offset: int) -> str:
    """Return tclean's ``start`` for the cube channel ``offset`` channels after ``start``.

    Parameters
    ----------
    start, width : `str`
        tclean's ``start`` and ``width`` of the whole cube: channel numbers
        (or empty), or frequencies/velocities with units.
    offset : `int`
        Output channel the chunk starts at.

    Raises
    ------
    ParameterError
        If ``start`` is a frequency or velocity and ``width`` does not give
        the channel width in compatible units.
    """
    if offset == 0:
        return start
    start_match, width_match = _QUANTITY.match(start or "0"), _QUANTITY.match(width or "1")
    if start_match is None or width_match is None:
        raise ParameterError(f"Cannot read start={start!r} / width={width!r} as channels or quantities.")
    start_value, start_unit = float(start_match[1]), start_match[2]
    width_value, width_unit = float(width_match[1]), width_match[2]
    if not start_unit and not width_unit:
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


def parse_parameter(name: str, text: str) -> object:
    """Turn a tclean-style command-line value into the config value of ``name``.

    Quantities stay as tclean writes them (``0.5arcsec``, ``2mJy``); lists are
    comma-separated (``scales=0,5,15``); booleans are ``True``/``False``.

    Raises
    ------
    ParameterError
        If ``name`` is not a supported tclean parameter or ``text`` does not
        fit its type.
    """
    field = CleanParametersConfig._fields.get(name)
    if field is None:
        raise ParameterError(
            f"Unknown or unsupported tclean parameter '{name}'; supported: "
            f"{', '.join(sorted(CleanParametersConfig._fields))}."
        )
    item_type = field.itemtype if isinstance(field, ListField) else field.dtype
    items = [item.strip() for item in text.split(",")] if isinstance(field, ListField) else [text.strip()]
    if isinstance(field, ListField) and text.strip() in ("", "[]"):
        items = []
    converted = []
    for item in items:
        try:
            if item_type is bool:
                if item not in ("True", "False", "true", "false"):
                    raise ValueError(item)
                converted.append(item.lower() == "true")
            else:
                converted.append(item_type(item))
        except ValueError:
            kind = {bool: "True or False", int: "an integer", float: "a number"}.get(item_type, "a string")
            raise ParameterError(f"Value '{item}' of tclean parameter '{name}' is not {kind}.") from None
    value = converted if isinstance(field, ListField) else converted[0]
    # Check the value against the field now, so that the message names the parameter.
    try:
        setattr(CleanParametersConfig(), name, value)
    except FieldValidationError as err:
        raise ParameterError(
            f"Value '{text}' of tclean parameter '{name}' is not allowed: {_reason(err)} ({field.doc})"
        ) from None
    return value


def _reason(err: FieldValidationError) -> str:
    lines = str(err).splitlines()
    reason = lines[0].split("failed validation: ", 1)[-1].strip()
    allowed = [line.strip() for line in lines if line.strip().startswith("Allowed values")]
    return f"{reason}; {allowed[0].replace(', None', '')}" if allowed else reason
