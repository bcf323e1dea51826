"""auto-multithresh: radio_clean.automask (numpy) next to CASA's C++ mask handler, same residuals.

Not a test: prints wall time and peak memory of one mask update (first cycle,
then a second cycle with growing) for a single plane and for a cube
(default 512 x 512 x 64), each implementation in a fresh process, and the
peak resident memory above what the process held before the first update
(imports and the synthetic images are shared by both). Usage::

    .venv/bin/python bench/automask_vs_casa.py [--size 512] [--nchan 64]

The CASA side is what AutoMaskTask does with ``implementation='casatools'``:
write the images as CASA images, make a synthesis deconvolver, call
``setupmask``. Its time includes writing and reading the images, which is
part of what that path costs in the pipeline.
"""

import argparse
import json
import subprocess
import sys
import textwrap

_JOB = """
import json, math, resource, time, numpy as np
import radio_clean
from radio_clean.image import Beam as ImageBeam, RadioImage, make_image_wcs
from radio_clean.demo import write_demo_data

size, nchan, implementation = {size}, {nchan}, {implementation!r}
rng = np.random.default_rng(1)
cell = 1.0
yy, xx = np.mgrid[:size, :size] - size / 2
beam_sigma = 3.0 / 2.3548
psf_plane = np.exp(-(xx**2 + yy**2) / (2 * beam_sigma**2)) + 0.1 * np.exp(-((np.hypot(xx, yy) - 12) ** 2) / 8)
psf_plane /= psf_plane.max()
residual = rng.normal(0, 1e-3, (1, nchan, size, size)).astype(np.float32)
for _ in range(30):
    y, x = rng.uniform(0.2, 0.8, 2) * size
    amp = 10 ** rng.uniform(-2, 0)
    r2 = (yy + size / 2 - y) ** 2 + (xx + size / 2 - x) ** 2
    residual[0] += (amp * np.exp(-r2 / (2 * (2 * beam_sigma) ** 2)))[None]
wcs = make_image_wcs(ra_deg=180.0, dec_deg=10.0, cell_arcsec=cell, nx=size, ny=size, frequency_hz=1.4e9,
                     channel_width_hz=1e6 if nchan > 1 else 1e8, spectral_frame="LSRK")
wcs.wcs.crpix[2] = 1.0
def image(pixels, unit="Jy/beam", beam=None):
    cube = np.broadcast_to(pixels, (1, nchan, size, size)).astype(np.float32).copy()
    return RadioImage(cube, wcs, brightness_unit=unit, restoring_beam=beam)
fitted = ImageBeam(3.0, 3.0, 0.0)
images = dict(psf=image(psf_plane, beam=fitted), pb=image(np.ones((size, size))),
              sumwt=image(np.ones((1, 1)), unit=""), residual=image(residual))
if implementation != "numpy":
    from radio_clean.casa import MsSelection, update_mask
    (ms,) = write_demo_data("/tmp/radio_clean-bench-data")
timings = []
# Memory is reported above this level: imports and the shared synthetic images are not the mask's cost.
baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if implementation == "numpy":
    from radio_clean import automask
    state = None
    for cycle in (1, 2):
        start = time.perf_counter()
        mask, state = automask.auto_multithresh(
            residual, psf_sidelobe_level=0.1, beam=automask.PixelBeam(3.0, 3.0), pb=images["pb"].pixels,
            state=state, iteration_done=cycle - 1)
        timings.append(time.perf_counter() - start)
else:
    parameters = dict(imsize=[size], cell=[f"{{cell}}arcsec"], usemask="auto-multithresh", niter=1,
                      specmode="cube" if nchan > 1 else "mfs", nchan=nchan if nchan > 1 else -1)
    selections = [MsSelection(ms)]
    previous = None
    for cycle in (1, 2):
        start = time.perf_counter()
        given = dict(images)
        if previous is not None:
            given["mask"] = previous
        previous = update_mask(parameters, given, selections)
        timings.append(time.perf_counter() - start)
usage = [resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
extra_mib = (max(usage) - baseline_kib) / 1024
print("BENCH " + json.dumps(dict(cycle1=timings[0], cycle2=timings[1], peak_mib=extra_mib)))
"""


def _measure(size: int, nchan: int, implementation: str) -> dict:
    code = _JOB.format(size=size, nchan=nchan, implementation=implementation)
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True)
    lines = [line for line in result.stdout.splitlines() if line.startswith("BENCH ")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"{implementation} job failed:\n{result.stderr[-3000:]}")
    return json.loads(lines[-1][6:])


def main() -> None:
    """Run both implementations on a plane and a cube and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--nchan", type=int, default=64)
    args = parser.parse_args()
    header = ("image", "implementation", "cycle 1 [s]", "cycle 2 [s]", "extra RSS [MiB]")
    print(f"{header[0]:>16s} {header[1]:>15s} {header[2]:>12s} {header[3]:>12s} {header[4]:>15s}")
    for nchan in (1, args.nchan):
        figures = {impl: _measure(args.size, nchan, impl) for impl in ("numpy", "casatools")}
        shape = f"{args.size}x{args.size}x{nchan}"
        for impl, numbers in figures.items():
            print(
                f"{shape:>16s} {impl:>15s} {numbers['cycle1']:12.2f} {numbers['cycle2']:12.2f} "
                f"{numbers['peak_mib']:15.0f}"
            )
        ratio_time = figures["casatools"]["cycle2"] / figures["numpy"]["cycle2"]
        ratio_memory = figures["casatools"]["peak_mib"] / figures["numpy"]["peak_mib"]
        print(f"{shape:>16s} {'casa/numpy':>15s} {'':>12s} {ratio_time:12.2f} {ratio_memory:15.2f}")


if __name__ == "__main__":
    main()
