"""How much memory and disk an imaging run needs, estimated before anything runs.

The estimate counts the images CASA and radio_clean hold: every image is
``nx × ny × Stokes × channels`` 4-byte pixels. It is a lower bound (CASA's
own buffers, W-projection convolution functions and the visibilities are not
counted), so a run it refuses cannot fit; it is there to stop a mistyped
``imsize`` or ``cell`` from filling the disk, not to plan a cluster job.
"""

from __future__ import annotations

__all__ = ["ResourceError", "ResourceEstimate", "check_resources", "estimate_resources"]

import dataclasses
import math
import os
import tempfile
from collections.abc import Sequence

from .casa import CasaError, field_names_and_channels
from .chunks import ChunkError, output_channel_count
from .parameters import CleanParametersConfig

_PADDING = 1.2
"""CASA's default grid padding."""
_FLOAT_BYTES = 4
_COMPLEX_BYTES = 8
_GB = 1e9
_REGISTRY_MARGIN = 16 * 2**20
"""Room in the repository for the registry database, configs, logs and metadata of a run."""


class ResourceError(RuntimeError):
    """The run cannot fit in the memory or disk of this machine; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class ResourceEstimate:
    """Memory and disk an imaging run needs (lower bounds, bytes)."""

    memory: int
    """Memory of the chains that run side by side (gridder grids and minor-cycle images)."""
    scratch: int
    """CASA scratch images in the temporary directory."""
    repository: int
    """Image datasets written into the repository (start, one cycle and finish)."""
    export: int
    """Exported FITS files."""
    shape: str
    """The image shape in words, e.g. ``100000x100000 pixels, 1 channel, 1 Stokes plane``."""


def _stokes_planes(stokes: str) -> int:
    stokes = stokes.strip().upper()
    return len(stokes) if set(stokes) <= set("IQUV") else max(1, len(stokes) // 2)


def estimate_resources(
    parameters: CleanParametersConfig, n_channels: int, *, n_chains: int = 1, jobs: int = 1
) -> ResourceEstimate:
    """Estimate the memory and disk of imaging with these parameters.

    Parameters
    ----------
    parameters : `CleanParametersConfig`
        tclean parameters (``imsize``, ``stokes``, ``deconvolver``,
        ``nterms``, ``scales``, ``gridder``).
    n_channels : `int`
        Channels of each image (1 for ``specmode=mfs``).
    n_chains : `int`, optional
        Chains the image planes are divided among (channel chunks of a cube)
        or that each make a whole image (fields of a continuum run: give
        ``n_channels`` times the fields as whole images then).
    jobs : `int`, optional
        Processes running chains side by side.

    Returns
    -------
    estimate : `ResourceEstimate`
        Lower bounds of what the run needs.
    """
    nx = parameters.imsize[0]
    ny = parameters.imsize[1] if len(parameters.imsize) > 1 else nx
    stokes = _stokes_planes(parameters.stokes)
    terms = parameters.term_count
    psf_terms = 2 * terms - 1
    pixels = nx * ny * stokes * n_channels
    plane_set = pixels * _FLOAT_BYTES
    chain_pixels = nx * ny * stokes * math.ceil(n_channels / max(1, n_chains))

    # Gridding: a padded complex grid and its FFT copy for each PSF term (MT-MFS grids 2T-1 at once).
    grids = 2 * psf_terms * _COMPLEX_BYTES * (_PADDING**2) * chain_pixels
    # Minor cycle: residual and model per term, PSF per PSF term, mask and primary beam.
    images = (2 * terms + psf_terms + 2) * _FLOAT_BYTES * chain_pixels
    scales = len(parameters.scales) if parameters.deconvolver in ("multiscale", "mtmfs") else 0
    if scales > 1:
        # Smoothed residuals and PSFs per scale (PSF cross terms per scale pair for MT-MFS), scale FTs.
        pairs = scales * (scales + 1) // 2 if terms > 1 else scales
        images += (pairs * psf_terms + scales * terms) * _FLOAT_BYTES * chain_pixels
        images += scales * _COMPLEX_BYTES * chain_pixels
    side_by_side = min(max(1, jobs), max(1, n_chains))
    memory = int((grids + images) * side_by_side)

    weight = psf_terms if parameters.gridder == "mosaic" else 0
    # The imager's and the deconvolver's workspaces: PSF, residual, model, PB, weight; mask, image, pbcor.
    scratch = (2 * psf_terms + 5 * terms + 3 + weight) * plane_set
    # start (PSF, PB, residual, mask, model), one more cycle (residual, mask, model), finish (image, pbcor).
    repository = (psf_terms + 2 + 2 * (2 * terms + 1) + terms + 1 + weight) * plane_set
    export = (3 * terms + 4 + (2 if terms > 1 else 0)) * plane_set
    channels = f"{n_channels} channel{'s' if n_channels != 1 else ''}"
    shape = f"{nx}x{ny} pixels, {channels}, {stokes} Stokes plane{'s' if stokes != 1 else ''}"
    return ResourceEstimate(memory, int(scratch), int(repository), int(export), shape)


def _fields_and_channels(ms_paths: Sequence[str]) -> tuple[int, int]:
    """Distinct field names and most channels of any spectral window of the MSs (1 if unreadable)."""
    names: set[str] = set()
    most = 1
    for path in ms_paths:
        try:
            fields, channels = field_names_and_channels(path)
        except CasaError:  # an unreadable MS is refused by ingest with its own sentence
            continue
        names.update(fields)
        most = max([most, *channels])
    return max(1, len(names)), most


def nearest_existing(path: str) -> str:
    """``path`` if it exists, else its nearest parent that does (where it would be made)."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def _free_bytes(path: str) -> tuple[int, int]:
    """Device and free bytes of the file system that holds (or would hold) ``path``."""
    existing = nearest_existing(path)
    stat = os.statvfs(existing)
    return os.stat(existing).st_dev, stat.f_bavail * stat.f_frsize


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_resources(
    ms_paths: Sequence[str],
    parameters: CleanParametersConfig,
    *,
    fields: Sequence[str] = (),
    jobs: int = 1,
    chunk_channels: int | None = None,
    repo: str,
    export_dir: str,
) -> ResourceEstimate:
    """Refuse a run whose images cannot fit in this machine's memory or disk.

    Parameters
    ----------
    ms_paths : `~collections.abc.Sequence` [`str`]
        MeasurementSets (their spectral windows give a cube's channels when
        ``nchan`` is -1; their fields, the continuum images made).
    parameters : `CleanParametersConfig`
        tclean parameters.
    fields : `~collections.abc.Sequence` [`str`], optional
        Fields asked for (default all).
    jobs : `int`, optional
        Processes running chains side by side.
    chunk_channels : `int`, optional
        Channels per chunk of a cube (default: ``jobs`` chunks).
    repo, export_dir : `str`
        Where the repository and the exported files are.

    Returns
    -------
    estimate : `ResourceEstimate`
        The estimate, if the run fits.

    Raises
    ------
    ResourceError
        If memory or disk is short; the message says how much is needed and
        free, and which parameter to change.
    """
    cube = parameters.specmode in ("cube", "cubedata")
    field_count, band_channels = _fields_and_channels(ms_paths)
    if cube:
        try:
            n_channels = output_channel_count(parameters, band_channels)
        except ChunkError:
            n_channels = band_channels
        n_chains = math.ceil(n_channels / (chunk_channels or math.ceil(n_channels / max(1, jobs))))
        n_images = 1
    else:
        n_channels = 1
        n_images = len(fields) or field_count
        n_chains = n_images
    estimate = estimate_resources(parameters, n_channels, n_chains=n_chains, jobs=jobs)
    change = "imsize" + (" or nchan" if cube else "") + (" or nterms" if parameters.term_count > 1 else "")
    available = _available_memory()
    if available is not None and estimate.memory > available:
        hint = f"a smaller {change}" + (" or fewer --jobs" if jobs > 1 else "")
        raise ResourceError(
            f"The images ({estimate.shape}) need at least {estimate.memory / _GB:.1f} GB of memory but "
            f"{available / _GB:.1f} GB are available; choose {hint}, "
            "or give --no-resource-check to try anyway."
        )
    # What shares a file system adds up there.
    needs: dict[int, list] = {}
    for what, where, amount in (
        (f"--repo {repo}", repo, estimate.repository * n_images + _REGISTRY_MARGIN),
        (f"--export {export_dir}", export_dir, estimate.export * n_images),
        (
            f"CASA's scratch in {tempfile.gettempdir()}",
            tempfile.gettempdir(),
            estimate.scratch * (1 if cube else min(max(1, jobs), n_images)),
        ),
    ):
        device, free = _free_bytes(where)
        entry = needs.setdefault(device, [[], 0, free])
        entry[0].append(what)
        entry[1] += amount
    for whats, amount, free in needs.values():
        if amount > free:
            raise ResourceError(
                f"{' and '.join(whats)}: the file system has {_human(free)} free, less than the "
                f"{_human(amount)} this run needs at least (images of {estimate.shape}); free some space "
                f"there, choose another place or a smaller {change}, or give --no-resource-check to try "
                "anyway."
            )
    return estimate


def _human(n_bytes: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n_bytes < 1024 or unit == "GiB":
            return f"{n_bytes:.0f} {unit}" if unit == "bytes" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    raise AssertionError("unreachable")
