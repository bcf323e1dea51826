"""Parity with tclean of the mosaic and widefield gridders.

As in ``test_parity.py``: the same MS goes through ``radio-clean image``'s code
path (`clean_utils.run_clean`) and through tclean with the same tclean
parameters, and the restored image, residual, model, PSF, primary beam, mask,
restoring beam and iteration summary are compared with the same tolerances.

- mosaic: seven ALMA pointings (a hexagon with a centre, spaced at half the
  primary beam) sharing one field name, imaged together on a phase centre
  given as tclean's ``phasecenter``, with ``pbcor=True`` and a PB mask.
- widefield: a VLA D-array field 40 arcmin across, with sources out to the
  half-power of the primary beam, W-projection planes and 2 x 2 facets.

Each runs in its own ``tmp_path``; safe under ``pytest -n N``.
"""

import math

import numpy as np
import pytest
from clean_utils import run_clean, tree_checksums
from test_parity import (
    BEAM_TOLERANCE,
    IMAGE_TOLERANCE,
    _check_mask_meaning,
    _difference,
    _pixels,
    _run_tclean,
)

from radio_clean.casa import read_casa_image, read_ms_info
from radio_clean.simulate import SkyComponent, simulate_ms

MOSAIC_SPACING_ARCSEC = 26.0
"""Half the FWHM of ALMA's 12 m primary beam at 100 GHz (about 58 arcsec)."""
MOSAIC_CENTRE = "J2000 10h00m00s -30d00m00s"


def _mosaic(directory):
    """Seven ALMA pointings at 100 GHz, all named SIM; sources between and beyond the pointings."""
    hexagon = [(0.0, 0.0)] + [
        (
            MOSAIC_SPACING_ARCSEC * math.cos(math.radians(60 * k + 30)),
            MOSAIC_SPACING_ARCSEC * math.sin(math.radians(60 * k + 30)),
        )
        for k in range(6)
    ]
    sky = simulate_ms(
        str(directory / "mosaic.ms"),
        [
            SkyComponent(1.0, (0.0, 0.0)),
            SkyComponent(0.5, (-30.0, 20.0)),
            SkyComponent(
                0.6, (25.0, -30.0), shape="gaussian", major_arcsec=6.0, minor_arcsec=4.0, pa_deg=30.0
            ),
            SkyComponent(0.4, (45.0, 15.0)),
        ],
        array="alma.cycle10.1",
        phase_centre=MOSAIC_CENTRE,
        freq_start_hz=100e9,
        chan_width_hz=1e9,
        n_chan=2,
        hours=14 * 30 / 3600,
        integration_s=30.0,
        pointings=hexagon,
        primary_beam=True,
        noise_jy=0.01,
        seed=2,
    )
    return sky


def _widefield(directory):
    """VLA D at 1.4 GHz, sources out to 15 arcmin where W-terms matter."""
    return simulate_ms(
        str(directory / "widefield.ms"),
        [
            SkyComponent(1.0, (0.0, 0.0)),
            SkyComponent(0.6, (-700.0, 500.0)),
            SkyComponent(0.5, (800.0, -600.0)),
            SkyComponent(0.4, (300.0, 850.0), shape="gaussian", major_arcsec=90.0, minor_arcsec=60.0),
        ],
        array="vla.d",
        phase_centre="J2000 12h30m00s +10d00m00s",
        freq_start_hz=1.4e9,
        chan_width_hz=32e6,
        n_chan=2,
        hours=1.0,
        integration_s=120.0,
        primary_beam=True,
        noise_jy=0.05,
        seed=4,
    )


CASES = {
    "mosaic-hogbom-briggs-pbmask-pbcor": (
        _mosaic,
        {
            "imsize": [128],
            "cell": ["1arcsec"],
            "gridder": "mosaic",
            "phasecenter": MOSAIC_CENTRE,
            "niter": 300,
            "deconvolver": "hogbom",
            "weighting": "briggs",
            "robust": 0.5,
            "usemask": "pb",
            "pbmask": 0.5,
            "pbcor": True,
            "datacolumn": "data",
        },
    ),
    "widefield-hogbom-natural-wproj-facets": (
        _widefield,
        {
            "imsize": [128],
            "cell": ["20arcsec"],
            "gridder": "widefield",
            "wprojplanes": 16,
            "facets": 2,
            "niter": 300,
            "deconvolver": "hogbom",
            "weighting": "natural",
            "pbcor": True,
            "datacolumn": "data",
        },
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_gridder_parity_with_tclean(name, tmp_path, monkeypatch):
    """Images, PB, mask and iteration control match tclean's for the mosaic and widefield gridders."""
    simulate, parameters = CASES[name]
    monkeypatch.chdir(tmp_path)  # CASA drops TempLattice files in the working directory
    sky = simulate(tmp_path)
    (field,) = read_ms_info(sky.path).fields
    if parameters["gridder"] == "mosaic":
        assert len(field.field_ids) == 7, "the mosaic must be one field of seven pointings"

    before = tree_checksums(sky.path)
    ours = run_clean([sky.path], parameters=parameters, directory=tmp_path / "ours")
    assert tree_checksums(sky.path) == before, "the task chain modified its input MeasurementSet"
    summary = _run_tclean(sky.path, field.name, parameters, tmp_path / "tclean", {})

    prefix = tmp_path / "tclean" / "img"
    kinds = ("image", "residual", "model", "psf", "pb", "image_pbcor")
    theirs = {kind: _pixels(f"{prefix}.{kind.replace('_', '.')}") for kind in kinds}
    theirs["mask"] = _pixels(f"{prefix}.mask") > 0.5
    mine = {kind: ours[kind].pixels for kind in kinds}
    mine["mask"] = ours["mask"].pixels > 0.5
    peak = float(np.nanmax(np.abs(theirs["image"])))
    measured = {kind: _difference(mine[kind], theirs[kind], peak) for kind in ("image", "residual", "model")}
    # The PB-corrected image is the image divided by a PB that falls to pblimit: its scale is its own peak.
    measured["image_pbcor"] = _difference(
        mine["image_pbcor"], theirs["image_pbcor"], float(np.nanmax(np.abs(theirs["image_pbcor"])))
    )
    measured |= {kind: _difference(mine[kind], theirs[kind], 1.0) for kind in ("psf", "pb")}
    ours_summary = ours["summary"]
    tclean_summary = {key: int(summary[key]) for key in ("iterdone", "nmajordone", "stopcode")}
    print(
        f"{name}: peak {peak:.6g}; "
        + ", ".join(f"{key} {value:.3g}" for key, value in measured.items())
        + f"; ours iterdone/nmajordone/stopcode {ours_summary['iterdone']}/{ours_summary['nmajordone']}/"
        f"{ours_summary['stopcode']}, tclean {tclean_summary['iterdone']}/{tclean_summary['nmajordone']}/"
        f"{tclean_summary['stopcode']}; mask pixels ours {int(mine['mask'].sum())} "
        f"tclean {int(theirs['mask'].sum())}"
    )

    failures = []
    for key, value in measured.items():
        limit = BEAM_TOLERANCE if key in ("psf", "pb") else IMAGE_TOLERANCE
        if not value <= limit:
            failures.append(f"{key}: max |ours - tclean| = {value:.3g} (limit {limit:g})")
    for key in ("stopcode", "nmajordone"):
        if ours_summary[key] != tclean_summary[key]:
            failures.append(f"{key} {ours_summary[key]} != tclean's {tclean_summary[key]}")
    if not abs(ours_summary["iterdone"] - tclean_summary["iterdone"]) <= 0.01 * tclean_summary["iterdone"]:
        failures.append(
            f"iterdone {ours_summary['iterdone']} is not within 1% of tclean's {tclean_summary['iterdone']}"
        )
    ours_beam, tclean_beam = ours["image"].restoring_beam, read_casa_image(f"{prefix}.image").restoring_beam
    if (
        ours_beam is None
        or tclean_beam is None
        or not np.allclose(
            [ours_beam.major_arcsec, ours_beam.minor_arcsec, ours_beam.pa_deg],
            [tclean_beam.major_arcsec, tclean_beam.minor_arcsec, tclean_beam.pa_deg],
            rtol=1e-4,
            atol=1e-4,
        )
    ):
        failures.append(f"restoring beam {ours_beam} != tclean's {tclean_beam}")
    if not np.array_equal(mine["mask"], theirs["mask"]):
        failures.append(f"masks differ in {int((mine['mask'] != theirs['mask']).sum())} pixels")
    failures += _check_mask_meaning(parameters, mine, theirs)
    assert not failures, f"{name} differs from tclean:\n" + "\n".join(failures)
