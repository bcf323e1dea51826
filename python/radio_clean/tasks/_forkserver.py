"""What the forkserver of `radio_clean.loop`'s worker processes loads, once.

Each worker is forked from that server and starts with whatever the server
has: the Rubin middleware, casatools (set up), casatasks' imager helpers, the
task modules, the Butler's storage classes and registry modules. Without this
a quantum spends about half a second importing and setting up before its task
starts.

This module is the one exception to "importing radio_clean changes no process
state": multiprocessing's forkserver preload can only import modules, so
importing this one *is* the server's set-up. Nothing but
``set_forkserver_preload`` in `radio_clean.loop` imports it, in the server
process, which runs nothing else.
"""

import gc

import lsst.daf.butler.datastores.fileDatastore  # noqa: F401
import lsst.daf.butler.registry.databases.sqlite  # noqa: F401
import lsst.daf.butler.registry.sql_registry  # noqa: F401
import matplotlib.colors  # noqa: F401
import matplotlib.figure  # noqa: F401
import matplotlib.patches  # noqa: F401
import scipy.fft  # noqa: F401
import sqlalchemy.dialects.sqlite  # noqa: F401
from lsst.daf.butler import StorageClassConfig, StorageClassFactory

from ..casa import preload_imager_helpers, set_up_casa
from . import auto_mask, deconvolve, gather_residual, major_cycle, make_psf, restore  # noqa: F401

set_up_casa()
StorageClassFactory().addFromConfig(StorageClassConfig())
preload_imager_helpers()
# The server's objects live as long as it does; frozen, they are skipped by the garbage
# collections of every quantum, which would otherwise walk (and copy) all of them.
gc.freeze()
