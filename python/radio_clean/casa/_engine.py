"""The warm engine: what tclean keeps between cycles, kept between calls in one process.

tclean sets up its synthesis tools once and keeps them, and the images they
work on, for all the cycles of a run. radio_clean runs each step as a
separate call, so that a step can run anywhere; when the steps of one chain
(field, band, channel chunk) do run one after the other in one process, this
module keeps, per chain:

- two scratch workspaces of CASA images (one for the imager, one for the
  deconvolver and normalizer), in which an input image is written only when
  it is not already there as the same content, untouched since it was
  written;
- the ``ImagerParameters`` records per set of tclean parameters;
- whatever `radio_clean.casa._synthesis` asks it to keep there (the
  synthesisimager that made the PSF, for the major cycles; the PSF sidelobe
  level), with a ``close`` called when the chain is dropped.

A chain is found by what determines its results, never by Python object
identity: the MeasurementSet selections, the tclean parameters and a content
digest of the images that stay the same for the whole chain (PSF, primary
beam, sums of weights, weights). A call in a fresh process, or after
`clear_engine_cache`, sets everything up again and gives the same bits.

At most ``RADIO_CLEAN_WARM_CHAINS`` chains (default 8) are kept, least
recently used first out; 0 makes every call set up afresh and clean up after
itself. A chain holds two copies of its constant images on disk (in the
system's temporary directory) and a synthesisimager in memory: for large
cubes, a smaller number may be wiser. Scratch directories go when a chain is
dropped, at `clear_engine_cache` and at process exit (multiprocessing
workers included); a forked child leaves its parent's alone; the scratch of a
process that was killed goes when the next process on the host makes a chain.
"""

from __future__ import annotations

__all__ = ["clear_engine_cache"]

import atexit
import collections
import contextlib
import dataclasses
import hashlib
import logging
import multiprocessing.util
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .._scratch import make_scratch_dir, remove_stale_scratch
from ..image import Beam, PlaneBeams, RadioImage
from ._images import read_casa_image, write_casa_image
from ._log import CasaError, casa_log_forwarded
from ._ms import telescope_name
from ._setup import casatools

_logger = logging.getLogger(__name__)

_CHAINS_VARIABLE = "RADIO_CLEAN_WARM_CHAINS"
_DEFAULT_CHAINS = 8

# Images every step of a chain gets unchanged: what MakePsfTask makes.
CONSTANT_KINDS = frozenset({"psf", "pb", "sumwt", "weight"})


def kind_base(kind: str) -> str:
    """Image kind without its Taylor term: ``psf.tt1`` -> ``psf``, ``image.pbcor`` -> ``image``."""
    return kind.split(".")[0]


# ==================================================================================================
# Digests
# ==================================================================================================


def _new_digest() -> Any:
    # SHA-256: twice as fast as BLAKE2b where the CPU has SHA instructions (x86 since ~2017).
    return hashlib.sha256()


def _feed(digest: Any, value: Any) -> None:
    """Add ``value`` to ``digest`` with its type, so that different values never feed the same bytes."""
    if value is None or isinstance(value, bool | int | float | str):
        digest.update(f"{type(value).__name__}:{value!r};".encode())
    elif isinstance(value, bytes):
        digest.update(b"bytes:%d:" % len(value) + value)
    elif isinstance(value, np.ndarray | np.generic):
        array = np.ascontiguousarray(value)
        digest.update(f"ndarray:{array.dtype.str}:{array.shape}:".encode())
        digest.update(array.tobytes() if array.dtype.hasobject else memoryview(array).cast("B"))
    elif isinstance(value, Mapping):
        digest.update(b"map{")
        for key in sorted(value, key=repr):
            _feed(digest, key)
            _feed(digest, value[key])
        digest.update(b"}")
    elif isinstance(value, list | tuple):
        digest.update(f"{type(value).__name__}[".encode())
        for item in value:
            _feed(digest, item)
        digest.update(b"]")
    else:
        digest.update(f"{type(value).__module__}.{type(value).__qualname__}:{value!r};".encode())


def value_digest(value: Any) -> str:
    """Digest of plain data (parameters, records): equal digests mean equal values and types."""
    digest = _new_digest()
    _feed(digest, value)
    return digest.hexdigest()


def _metadata_digest(image: RadioImage) -> bytes:
    # Everything of the image that write_casa_image turns into CASA coordinates, image info,
    # unit and provenance: equal digests write the same CASA image apart from its pixels.
    wcs = image.wcs.wcs
    beam = image.restoring_beam
    if isinstance(beam, Beam):
        beam_value: Any = ("beam", beam.major_arcsec, beam.minor_arcsec, beam.pa_deg)
    elif isinstance(beam, PlaneBeams):
        beam_value = ("planes", beam.major_arcsec, beam.minor_arcsec, beam.pa_deg)
    else:
        beam_value = None
    digest = _new_digest()
    _feed(
        digest,
        [
            image.shape,
            list(image.stokes),
            [str(ctype) for ctype in wcs.ctype],
            [str(cunit) for cunit in wcs.cunit],
            np.asarray(wcs.crval, dtype=float),
            np.asarray(wcs.crpix, dtype=float),
            np.asarray(wcs.get_cdelt(), dtype=float),
            np.asarray(wcs.get_pc(), dtype=float),
            [tuple(pv) for pv in wcs.get_pv()],
            float(wcs.lonpole),
            float(wcs.latpole),
            float(wcs.equinox),
            str(wcs.radesys),
            str(wcs.specsys),
            float(wcs.restfrq),
            float(wcs.mjdobs),
            str(wcs.timesys),
            np.asarray(wcs.obsgeo, dtype=float),
            image.brightness_unit,
            beam_value,
            dict(image.provenance),
        ],
    )
    return digest.digest()


SYNTHESIS_HEADER_KEYS = ("useweightimage",)
"""miscinfo entries of CASA's images that its synthesis tools read as state.

``useweightimage`` in the sumwt says the gridder normalizes with a weight image
(mosaic, awproject). A normalizer made from images on disk reads it when it is
set up: without it ``dividemodelbyweight`` does nothing, and the mosaic gridder
predicts the flat-noise model as if it were the sky (the off-centre sources of
a mosaic are then subtracted short by their PB). `read_casa_image` keeps
miscinfo in the provenance, which `write_casa_image` stores elsewhere.
"""


def _restore_synthesis_header(image: RadioImage, path: str) -> None:
    header = {key: image.provenance[key] for key in SYNTHESIS_HEADER_KEYS if key in image.provenance}
    if not header:
        return
    tool = casatools.image()
    try:
        tool.open(path)
        tool.setmiscinfo({**tool.miscinfo(), **header})
    finally:
        tool.close()
        tool.done()


@dataclasses.dataclass(frozen=True)
class ImageDigest:
    """Content digest of a `RadioImage`: of what `write_casa_image` writes, and of that but the pixels."""

    metadata: bytes
    full: bytes

    @classmethod
    def of(cls, image: RadioImage) -> ImageDigest:
        """Digest ``image`` (once per call of an imaging step: the step's images do not change meanwhile)."""
        memo = _step_digests.get(id(image))
        if memo is not None and memo[0] is image:
            return memo[1]
        metadata = _metadata_digest(image)
        digest = _new_digest()
        digest.update(metadata)
        _feed(digest, image.pixels)
        result = cls(metadata, digest.digest())
        if _step_digests is not _NO_STEP:
            # The image is kept with its digest, so its id cannot be reused during the step.
            _step_digests[id(image)] = (image, result)
        return result


# Digests of the images of the imaging step running now, by id (see `warm_chain`).
_NO_STEP: dict[int, tuple[RadioImage, ImageDigest]] = {}
_step_digests = _NO_STEP


def images_digest(images: Mapping[str, RadioImage]) -> str:
    """Digest of several images by kind."""
    digest = _new_digest()
    for kind in sorted(images):
        _feed(digest, kind)
        digest.update(ImageDigest.of(images[kind]).full)
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class FilesDigest:
    """Digest of the files of a CASA image on disk.

    ``full`` covers every file but the lock file; ``metadata`` leaves out
    the pixels (``table.f0_TSM*`` of the image table itself) and the history
    (``logtable``), which an ``image.putchunk`` rewrites, and keeps the
    coordinates, image info, miscinfo, keywords and pixel masks; ``pixels``
    is that of the pixels alone. Files, not what casatools reads from them:
    only meaningful when no tool has unwritten changes (tools closed, or
    their images unlocked).
    """

    full: bytes
    metadata: bytes
    pixels: bytes

    @classmethod
    def of(cls, path: str) -> FilesDigest:
        """Digest the CASA image at ``path``."""
        full, metadata, pixels = _new_digest(), _new_digest(), _new_digest()
        for root, directories, names in os.walk(path):
            directories.sort()
            relative_root = os.path.relpath(root, path)
            history = relative_root == "logtable" or relative_root.startswith("logtable" + os.sep)
            for name in sorted(names):
                if name == "table.lock":
                    continue
                file_digest = _new_digest()
                with open(os.path.join(root, name), "rb") as stream:
                    while chunk := stream.read(1 << 22):
                        file_digest.update(chunk)
                entry = f"{os.path.join(relative_root, name)}:{file_digest.hexdigest()};".encode()
                full.update(entry)
                if relative_root == "." and name.startswith("table.f0_TSM"):
                    pixels.update(entry)
                elif not history:
                    metadata.update(entry)
        return cls(full.digest(), metadata.digest(), pixels.digest())


# ==================================================================================================
# Workspaces
# ==================================================================================================


@dataclasses.dataclass(frozen=True)
class _Written:
    image: ImageDigest
    files: FilesDigest


class Workspace:
    """A directory of CASA images named as tclean names them (``img.psf``, ``img.model.tt0``...).

    It remembers what it wrote (content digest of the `RadioImage`, digest
    of the files written), so that an image already there, with the same
    content and untouched since, is not written again.

    Parameters
    ----------
    directory : `str`
        Directory of the images; made if missing.
    telescope : `str`, optional
        Telescope name of the images written here (casacore converts a
        spectral frame only for a telescope it finds by name).
    """

    def __init__(self, directory: str, telescope: str = "") -> None:
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self.imagename = os.path.join(directory, "img")
        self.telescope = telescope
        self._written: dict[str, _Written] = {}

    def path(self, kind: str) -> str:
        """Path of the image of this kind."""
        return f"{self.imagename}.{kind}"

    def kinds(self) -> list[str]:
        """Kinds of the images in the workspace (``psf``, ``model.tt1``...)."""
        return sorted(
            name.removeprefix("img.") for name in os.listdir(self.directory) if name.startswith("img.")
        )

    def get(self, prefixes: Sequence[str]) -> dict[str, RadioImage]:
        """Read every image whose kind starts with one of ``prefixes``."""
        return {
            kind: read_casa_image(self.path(kind))
            for kind in self.kinds()
            if any(kind == prefix or kind.startswith(prefix + ".") for prefix in prefixes)
        }

    def write(self, kind: str, image: RadioImage, digest: ImageDigest | None = None) -> None:
        """Write one image as a new CASA image, replacing any of the same kind.

        The header entries CASA's synthesis tools read their state from (see
        `SYNTHESIS_HEADER_KEYS`) go back where CASA put them.
        """
        path = self.path(kind)
        write_casa_image(image, path, overwrite=True, telescope=self.telescope)
        _restore_synthesis_header(image, path)
        self._written[kind] = _Written(digest or ImageDigest.of(image), FilesDigest.of(path))

    def sync(self, images: Mapping[str, RadioImage], *, may_stay: Sequence[str] = ()) -> None:
        """Make the workspace hold exactly ``images``, as if they had just been written.

        Anything else in the directory goes, but for the kinds in
        ``may_stay`` (to be rewritten with `put` before use); an image already there with the
        same content and untouched since it was written stays; one that
        differs only in its pixels gets the new pixels (a third of the cost
        of a new CASA image); the others are written. Only for images no
        live tool holds open (see `update_in_place`).
        """
        digests = {kind: ImageDigest.of(image) for kind, image in images.items()}
        for name in os.listdir(self.directory):
            if name.startswith("img.") and (
                name.removeprefix("img.") in images or name.removeprefix("img.") in may_stay
            ):
                continue
            path = os.path.join(self.directory, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)
            self._written.pop(name.removeprefix("img."), None)
        for kind, image in images.items():
            self.put(kind, image, digests[kind])

    def put(self, kind: str, image: RadioImage, digest: ImageDigest | None = None) -> None:
        """Make the image of this kind hold ``image``: kept, its pixels rewritten, or written anew."""
        digest = digest or ImageDigest.of(image)
        action = self._action(kind, digest)
        if action == "pixels":
            self._put_pixels(kind, image, digest)
        elif action == "write":
            self.write(kind, image, digest)

    def _action(self, kind: str, digest: ImageDigest) -> str:
        """How to bring the image of this kind to ``digest``: ``keep``, ``pixels`` or ``write``."""
        written = self._written.get(kind)
        if written is None or not os.path.isdir(self.path(kind)):
            return "write"
        files = FilesDigest.of(self.path(kind))
        if written.image == digest and files.full == written.files.full:
            return "keep"
        if written.image.metadata == digest.metadata and files.metadata == written.files.metadata:
            return "pixels"
        return "write"

    def update_in_place(
        self,
        images: Mapping[str, RadioImage],
        *,
        may_rewrite: Callable[[str], bool],
        may_stay: Callable[[str], bool],
    ) -> bool:
        """Bring the workspace to ``images`` without replacing an image a live tool may hold open.

        Parameters
        ----------
        images : `~collections.abc.Mapping` [`str`, `RadioImage`]
            The images the next step must find.
        may_rewrite : callable
            Kinds whose pixels may be overwritten in the existing CASA image
            (``image.putchunk``) when everything else about it is as written.
        may_stay : callable
            Kinds that may stay in the workspace without being in ``images``
            (outputs the next step overwrites).

        Returns
        -------
        updated : `bool`
            `False`, with nothing changed, if that cannot be done.
        """
        plan: list[tuple[str, str, ImageDigest]] = []
        present = set(self.kinds())
        if any(kind not in images and not may_stay(kind) for kind in present):
            return False
        for kind, image in images.items():
            digest = ImageDigest.of(image)
            if kind not in present:
                plan.append(("write", kind, digest))
                continue
            if kind not in self._written:
                return False
            action = self._action(kind, digest)
            if action == "pixels" and may_rewrite(kind):
                plan.append(("pixels", kind, digest))
            elif action != "keep":
                return False
        for action, kind, digest in plan:
            if action == "write":
                self.write(kind, images[kind], digest)
            else:
                self._put_pixels(kind, images[kind], digest)
        return True

    def _put_pixels(self, kind: str, image: RadioImage, digest: ImageDigest) -> None:
        path = self.path(kind)
        tool = casatools.image()
        try:
            with casa_log_forwarded():
                tool.open(path)
                # (stokes, chan, y, x) in numpy -> CASA's (x, y, stokes, chan), as write_casa_image writes.
                tool.putchunk(image.pixels.transpose(3, 2, 0, 1), locking=True)
                tool.close()
        except Exception as err:
            raise CasaError(f"casatools could not update the pixels of {path}: {err}") from err
        finally:
            tool.done()
        self._written[kind] = _Written(digest, FilesDigest.of(path))

    def adopt(self, kind: str, image: RadioImage) -> None:
        """Take the image CASA made for this kind as the one written from ``image``."""
        self._written[kind] = _Written(ImageDigest.of(image), FilesDigest.of(self.path(kind)))

    def written_files(self, kinds: Sequence[str]) -> dict[str, FilesDigest]:
        """Digests of the files of these images as they were written (for those written here)."""
        return {kind: self._written[kind].files for kind in kinds if kind in self._written}

    def files_now(self, kinds: Sequence[str]) -> dict[str, FilesDigest]:
        """Digest the files of these images as they are now."""
        return {kind: FilesDigest.of(self.path(kind)) for kind in kinds if os.path.isdir(self.path(kind))}

    def accept_files(self, kinds: Sequence[str]) -> None:
        """Take the images of these kinds, as they are on disk now, as what was written."""
        for kind in kinds:
            written = self._written.get(kind)
            if written is not None and os.path.isdir(self.path(kind)):
                self._written[kind] = _Written(written.image, FilesDigest.of(self.path(kind)))

    def forget(self, kinds: Sequence[str]) -> None:
        """Forget what was written for these kinds: they will be written again before use."""
        for kind in kinds:
            self._written.pop(kind, None)


@contextlib.contextmanager
def scratch_workspace() -> Iterator[Workspace]:
    """An empty workspace of its own for one step, removed afterwards."""
    directory = tempfile.mkdtemp(prefix="radio_clean-casa-")
    try:
        yield Workspace(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def casa_calls(directory: str) -> Iterator[None]:
    """Run casatools calls in ``directory``, CASA's log forwarded, failures as `CasaError`.

    CASA writes scratch tables (IMAGING_WEIGHT_*, TempLattice*) into the
    working directory: they go into the workspace, which is removed later.
    The working directory is restored afterwards.
    """
    try:
        working_directory = os.getcwd()
    except FileNotFoundError:  # removed under us (e.g. a test's directory at exit)
        working_directory = tempfile.gettempdir()
    # The working directory is the process's: casatools steps run one at a time (casatools is not
    # thread-safe), and it is restored, whatever happens, before the step returns.
    os.chdir(directory)
    try:
        with casa_log_forwarded():
            yield
    except CasaError:
        raise
    except RuntimeError as err:
        raise CasaError(f"casatools failed: {err}") from err
    finally:
        os.chdir(working_directory)


# ==================================================================================================
# Chains
# ==================================================================================================


class Chain:
    """What is kept for one chain: scratch workspaces, imager parameters and live tools.

    Parameters
    ----------
    key : `str`
        Digest of the selections, tclean parameters and constant images.
    """

    def __init__(self, key: str) -> None:
        self.key = key
        self.pid = os.getpid()
        self.directory = make_scratch_dir(_SCRATCH_PREFIX)
        self.imaging = Workspace(os.path.join(self.directory, "imaging"))
        """Where the live synthesisimager grids; its images stay open between calls."""
        self.deconvolution = Workspace(os.path.join(self.directory, "deconvolution"))
        """Where deconvolvers and normalizers run, each set up for one call."""
        self.parameters: dict[tuple[str, str], Any] = {}
        """ImagerParameters by (image name, digest of the tclean parameters)."""
        self.kept: dict[str, Any] = {}
        """What the steps keep between calls, by name; values with a ``close()`` are closed at the end."""
        self._telescope_named = False

    def name_telescope(self, selections: Sequence[Any]) -> None:
        """Name the telescope of the selections' first MS in the images the workspaces write (once)."""
        if selections and not self._telescope_named:
            self.imaging.telescope = self.deconvolution.telescope = telescope_name(selections[0].path)
            self._telescope_named = True

    def imager_parameters(self, workspace: Workspace, parameters_key: str, make: Callable[[], Any]) -> Any:
        """Return the ImagerParameters for these parameters in ``workspace``, made once."""
        key = (workspace.imagename, parameters_key)
        if key not in self.parameters:
            self.parameters[key] = make()
        return self.parameters[key]

    def drop(self, name: str) -> None:
        """Close and forget what is kept under ``name``."""
        kept = self.kept.pop(name, None)
        if kept is not None and hasattr(kept, "close"):
            kept.close()

    def close(self) -> None:
        """Close the kept tools and remove the scratch directory."""
        try:
            for name in list(self.kept):
                try:
                    self.drop(name)
                except Exception as err:  # a tool that cannot close must not keep the scratch
                    _logger.debug("Closing %s of a warm chain failed: %s", name, err)
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def disown(self) -> None:
        """Forget the kept tools without closing them (a forked child must not touch its parent's)."""
        for kept in self.kept.values():
            for tool in getattr(kept, "tools", lambda: [])():
                swig = getattr(tool, "_swigobj", None)
                if swig is not None and hasattr(swig, "thisown"):
                    swig.thisown = False
        self.kept.clear()


_SCRATCH_PREFIX = "radio_clean-warm-"
_lock = threading.RLock()
_chains: collections.OrderedDict[str, Chain] = collections.OrderedDict()
_orphans: list[Chain] = []
_hooks_registered = False
_finalizer_pid: int | None = None

checked_measurement_sets: set[Any] = set()
"""Sets of MeasurementSets (as they are on disk) found fit to be imaged together; cleared with the rest."""


def _chain_limit() -> int:
    value = os.environ.get(_CHAINS_VARIABLE, "")
    try:
        return max(0, int(value)) if value.strip() else _DEFAULT_CHAINS
    except ValueError:
        raise CasaError(f"{_CHAINS_VARIABLE}={value!r} is not a number of chains.") from None


def _register_hooks() -> None:
    global _hooks_registered, _finalizer_pid
    if not _hooks_registered:
        atexit.register(clear_engine_cache)
        os.register_at_fork(after_in_child=_forget_after_fork)
        _hooks_registered = True
    if _finalizer_pid != os.getpid():
        # multiprocessing's workers (pipetask -j, process pools) end with os._exit, which skips
        # atexit; they run multiprocessing's own finalizers first, registered in each process.
        multiprocessing.util.Finalize(None, clear_engine_cache, exitpriority=10)
        _finalizer_pid = os.getpid()
        remove_stale_scratch(_SCRATCH_PREFIX)


def _forget_after_fork() -> None:
    # The scratch directories and live tools belong to the parent: a child leaves them alone.
    global _chains, _lock
    for chain in _chains.values():
        chain.disown()
        _orphans.append(chain)
    _chains = collections.OrderedDict()
    _lock = threading.RLock()


def chain_key(
    selections: Sequence[Any], parameters: Mapping[str, Any], images: Mapping[str, RadioImage]
) -> str:
    """Key of a chain: selections, tclean parameters and the digest of the constant images."""
    constants = {kind: image for kind, image in images.items() if kind_base(kind) in CONSTANT_KINDS}
    return value_digest(
        [
            [(os.path.abspath(s.path), s.path, s.field, s.spw) for s in selections],
            value_digest(dict(parameters)),
            images_digest(constants),
        ]
    )


@contextlib.contextmanager
def warm_chain(
    selections: Sequence[Any], parameters: Mapping[str, Any], images: Mapping[str, RadioImage]
) -> Iterator[Chain]:
    """The chain for these inputs, made if needed; dropped if the step fails.

    Steps run one at a time (casatools is not thread-safe); afterwards the
    cache is trimmed to its size (with size 0 the chain goes at once).
    """
    global _step_digests
    with _lock:
        outer, _step_digests = _step_digests, {}
        try:
            with _chain(chain_key(selections, parameters, images)) as chain:
                chain.name_telescope(selections)
                yield chain
        finally:
            _step_digests = outer


@contextlib.contextmanager
def _chain(key: str) -> Iterator[Chain]:
    with _lock:
        chain = _chains.pop(key, None)
        if chain is None:
            _register_hooks()
            chain = Chain(key)
        _chains[key] = chain
        try:
            yield chain
        except BaseException:
            _chains.pop(key, None)
            chain.close()
            raise
        finally:
            _trim(_chain_limit())


@contextlib.contextmanager
def new_chain() -> Iterator[Chain]:
    """A chain for a step that learns its key only from what it makes (`add_chain`); closed if it fails."""
    with _lock:
        _register_hooks()
        chain = Chain("")
        try:
            yield chain
        except BaseException:
            chain.close()
            raise


def add_chain(
    chain: Chain, selections: Sequence[Any], parameters: Mapping[str, Any], images: Mapping[str, RadioImage]
) -> None:
    """Keep ``chain`` as the chain of these inputs, in place of any other."""
    key = chain_key(selections, parameters, images)
    chain.name_telescope(selections)
    with _lock:
        previous = _chains.pop(key, None)
        if previous is not None and previous is not chain:
            previous.close()
        chain.key = key
        _chains[key] = chain
        _trim(_chain_limit())


def retire(chain: Chain) -> None:
    """Close ``chain`` and forget it: its last step has run (a later call would set up afresh)."""
    with _lock:
        if _chains.get(chain.key) is chain:
            del _chains[chain.key]
        chain.close()


def _trim(limit: int) -> None:
    while len(_chains) > limit:
        _, chain = _chains.popitem(last=False)
        chain.close()


def clear_engine_cache() -> None:
    """Close every kept tool and remove every scratch directory of the warm engine.

    The next imaging call sets everything up again, as in a fresh process.
    Registered to run at process exit.
    """
    with _lock:
        checked_measurement_sets.clear()
        while _chains:
            _, chain = _chains.popitem(last=False)
            if chain.pid == os.getpid():
                chain.close()
