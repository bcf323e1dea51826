"""The CLEAN PipelineTasks, one module per task."""

import multiprocessing

# ``pipetask run -j N --start-method forkserver`` forks each quantum's process from one server
# process. "__main__" (the pipetask script, as multiprocessing does by default) and
# `radio_clean.tasks._forkserver` are loaded there once, so a quantum does not spend seconds
# importing the Rubin middleware, casatools and scipy again.
multiprocessing.set_forkserver_preload(["__main__", "radio_clean.tasks._forkserver"])
