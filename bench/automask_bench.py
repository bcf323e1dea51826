"""Time radio_clean.automask.auto_multithresh on synthetic images.

Run: ``python bench/automask_bench.py [--size 2048] [--nchan 64 --cube-size 256]``.
Prints the wall time of a first cycle (no growth) and of a second cycle (with
the grow stage) for one large plane and for a cube, and the peak memory.
"""

import argparse
import math
import resource
import time

import numpy as np

from radio_clean.automask import AutoMaskParameters, PixelBeam, auto_multithresh


def _sky(rng: np.random.Generator, shape: tuple[int, int], nsources: int, fwhm: float) -> np.ndarray:
    ny, nx = shape
    plane = rng.normal(0.0, 1e-3, shape).astype(np.float32)
    yy, xx = np.mgrid[:ny, :nx]
    for _ in range(nsources):
        y, x = rng.uniform(0.1, 0.9) * ny, rng.uniform(0.1, 0.9) * nx
        amplitude = 10 ** rng.uniform(-2, 0.5)
        size = fwhm * rng.uniform(1.0, 6.0)
        half = 4 * size
        box = (slice(max(0, int(y - half)), int(y + half)), slice(max(0, int(x - half)), int(x + half)))
        r2 = (yy[box] - y) ** 2 + (xx[box] - x) ** 2
        plane[box] += (amplitude * np.exp(-4 * math.log(2) * r2 / size**2)).astype(np.float32)
    return plane


def _run(label: str, cube: np.ndarray, beam: PixelBeam) -> None:
    params = AutoMaskParameters()
    start = time.perf_counter()
    mask, state = auto_multithresh(cube, psf_sidelobe_level=0.1, beam=beam, state=None, params=params)
    first = time.perf_counter() - start
    start = time.perf_counter()
    mask, state = auto_multithresh(
        cube * np.float32(0.3),
        psf_sidelobe_level=0.1,
        beam=beam,
        state=state,
        iteration_done=100,
        params=params,
    )
    second = time.perf_counter() - start
    print(
        f"{label:32s} shape {cube.shape}: cycle 1 {first:6.2f} s, cycle 2 (grow) {second:6.2f} s, "
        f"{first / (cube.shape[0] * cube.shape[1]) * 1e3:7.1f} ms/plane, mask {int(mask.sum())} px"
    )


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="side of the single-plane image")
    parser.add_argument("--cube-size", type=int, default=256, help="side of the cube's planes")
    parser.add_argument("--nchan", type=int, default=64, help="channels of the cube")
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    beam = PixelBeam(5.0, 4.0, 30.0)
    _run("single plane", _sky(rng, (args.size, args.size), 40, 5.0)[np.newaxis, np.newaxis], beam)
    cube = np.empty((1, args.nchan, args.cube_size, args.cube_size), dtype=np.float32)
    for chan in range(args.nchan):
        cube[0, chan] = _sky(rng, (args.cube_size, args.cube_size), 5, 5.0)
    _run("cube", cube, beam)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
