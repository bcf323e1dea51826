"""The CLEAN PipelineTasks, one module per task."""

import multiprocessing

# ``pipetask run -j N --start-method forkserver`` forks each quantum's process from one server
# process; with these modules imported there once, a quantum starts in milliseconds instead of
# spending seconds importing the Rubin middleware, casatools and scipy again.
multiprocessing.set_forkserver_preload(
    [
        "lsst.pipe.base",
        "lsst.daf.butler",
        "radio_clean.tasks.make_psf",
        "radio_clean.tasks.major_cycle",
        "radio_clean.tasks.gather_residual",
        "radio_clean.tasks.auto_mask",
        "radio_clean.tasks.deconvolve",
        "radio_clean.tasks.restore",
    ]
)
