"""Quick-look figures: a restored image with its beam, and CLEAN's convergence."""

from __future__ import annotations

__all__ = ["IMPORTED_WHEN_DRAWING", "convergence_figure", "image_figure"]

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .image import RadioImage

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# matplotlib (a quarter of a second to import) is imported by the functions that draw, so that
# importing the tasks and the CLI does not pay for it.
IMPORTED_WHEN_DRAWING = (
    "astropy.stats",
    "astropy.visualization.wcsaxes",
    "matplotlib.backends.backend_agg",
    "matplotlib.colors",
    "matplotlib.figure",
    "matplotlib.patches",
    "matplotlib.ticker",
)
"""Modules the figures need: imported ahead of the first figure by the CLEAN loop's second thread."""


def image_figure(image: RadioImage, *, title: str) -> Figure:
    """Draw the first plane of ``image`` on sky axes, with a colour bar, the restoring beam, peak and rms.

    Parameters
    ----------
    image : `RadioImage`
        Image to draw (Stokes 0, channel 0).
    title : `str`
        Figure title.

    Returns
    -------
    figure : `matplotlib.figure.Figure`
        The figure (no pyplot state is touched).
    """
    from astropy import units
    from astropy.stats import mad_std
    from matplotlib.colors import AsinhNorm
    from matplotlib.figure import Figure
    from matplotlib.patches import Ellipse
    from matplotlib.ticker import FormatStrFormatter, NullLocator

    figure = Figure(figsize=(7, 6), dpi=100)
    figure.subplots_adjust(left=0.18)
    axes = figure.add_subplot(projection=image.wcs.celestial)
    plane = image.pixels[0, 0]
    finite = plane[np.isfinite(plane)]
    if finite.size == 0:
        finite = np.zeros(1)
    # An asinh stretch, linear within a few noise levels, shows the noise and the peak at once.
    noise = float(mad_std(finite)) or 1e-6
    stretch = AsinhNorm(linear_width=3 * noise, vmin=float(finite.min()), vmax=float(finite.max()))
    shown = axes.imshow(plane, origin="lower", cmap="inferno", norm=stretch)
    colour_bar = figure.colorbar(shown, ax=axes)
    colour_bar.set_ticks(_colour_bar_ticks(stretch, noise))
    # Plain labels: the default ones are typeset with mathtext (a second of font set-up).
    colour_bar.ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
    colour_bar.ax.yaxis.set_minor_locator(NullLocator())
    colour_bar.set_label(image.brightness_unit or "")
    axes.set_xlabel("Right ascension")
    axes.set_ylabel("Declination")
    for coordinate in axes.coords:
        # Sexagesimal RA labels of a wide image run into each other otherwise.
        coordinate.set_ticklabel(exclude_overlapping=True)
        if coordinate.get_format_unit() == units.hourangle:
            # 12ʰ29ᵐ06ˢ in plain text: WCSAxes typesets the superscripts with mathtext otherwise,
            # a quarter of a second of parser and font set-up in every run.
            coordinate.set_separator(("ʰ", "ᵐ", "ˢ"))
    unit = image.brightness_unit or ""
    axes.set_title(
        f"{title}\npeak {float(finite.max()):.4g} {unit}, rms {noise:.3g} {unit} (MAD)", fontsize=10
    )
    beam = image.restoring_beam
    if beam is not None and not hasattr(beam, "n_chan"):
        cell_arcsec = abs(image.wcs.celestial.wcs.cdelt[1]) * 3600.0
        ny, nx = plane.shape
        # Ellipse angle is counter-clockwise from +x; a beam PA is east (-x) of north (+y).
        axes.add_patch(
            Ellipse(
                (0.08 * nx, 0.08 * ny),
                width=beam.minor_arcsec / cell_arcsec,
                height=beam.major_arcsec / cell_arcsec,
                angle=beam.pa_deg,
                facecolor="none",
                edgecolor="cyan",
                linewidth=1.5,
                label="restoring beam",
            )
        )
    return figure


def _colour_bar_ticks(stretch: Any, noise: float) -> list[float]:
    """Minimum, zero, ten times the noise, the geometric middle and the peak, none crowding another."""
    low, high = float(stretch.vmin), float(stretch.vmax)
    candidates = [
        low,
        0.0,
        10 * noise,
        float(np.sqrt(10 * noise * high)) if high > 10 * noise else high,
        high,
    ]
    ticks: list[float] = []
    for value in sorted(candidates):
        # At least 8% of the bar apart, in the stretch's own (asinh) scale.
        if low <= value <= high and all(abs(float(stretch(value)) - float(stretch(t))) > 0.08 for t in ticks):
            ticks.append(value)
    return ticks


def convergence_figure(summary: Mapping[str, Any], *, title: str) -> Figure:
    """Draw the peak residual after every major cycle, the cycle thresholds and the threshold.

    Parameters
    ----------
    summary : `~collections.abc.Mapping`
        Final iteration summary (RestoreTask's ``clean_summary``):
        ``peak_residual_after_major_cycle``, ``cycle_thresholds``,
        ``threshold``, ``iterdone``, ``nmajordone``, ``stop_reason``.
    title : `str`
        Figure title.

    Returns
    -------
    figure : `matplotlib.figure.Figure`
        The figure.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogFormatter, MaxNLocator, NullFormatter

    figure = Figure(figsize=(7, 4), dpi=100)
    axes = figure.add_subplot()
    # Major cycle 0 makes the dirty image; the minor cycle after major cycle k starts from its residual.
    peaks = summary.get("peak_residual_after_major_cycle", [])
    floor = 1e-12
    axes.semilogy(
        np.arange(len(peaks)),
        np.maximum(np.abs(peaks), floor),
        "o-",
        label="peak residual after the major cycle",
    )
    thresholds = [value for value in summary.get("cycle_thresholds", []) if np.isfinite(value)]
    if thresholds:
        axes.semilogy(
            np.arange(len(thresholds)),
            np.maximum(thresholds, floor),
            "v--",
            label="cycle threshold of the minor cycle",
        )
    if summary.get("threshold", 0.0) > 0:
        axes.axhline(summary["threshold"], color="grey", linestyle=":", label="threshold")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("major cycle")
    axes.set_ylabel("Jy/beam")
    axes.set_title(
        f"{title}: {summary.get('iterdone', 0)} iterations, {summary.get('nmajordone', 0)} major cycles, "
        f"stop: {summary.get('stop_reason', '?')}",
        fontsize=9,
    )
    # Plain tick labels (0.01, not 10^-2 typeset): matplotlib's mathtext costs about a second of
    # font set-up per process, for every CLEAN run.
    axes.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=True))
    axes.yaxis.set_minor_formatter(NullFormatter())
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    return figure
