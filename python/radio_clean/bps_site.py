"""parsl's local site for bps (``site.local.class`` of bps/continuum_local.yaml): less waiting per step,
nothing left in the temporary directory.

`lsst.ctrl.bps.parsl.sites.Local` runs a step's jobs in a pool of worker
processes that parsl's scaling strategy starts at one of its polls, every
5 s by default, after the jobs are handed to parsl: each bps step (each
step of the CLEAN loop) waited up to 5 s before its first job could start.
This site is that one, polled every `STRATEGY_PERIOD_S` seconds.

parsl's worker pool keeps a socket in a ``pymp-*`` directory of the
temporary directory (its multiprocessing manager's) and is stopped at the
end of the submission without removing it: one such directory was left per
bps submission, so per step of the loop. This site gives the worker pools
of a submission a temporary directory of their own, removed when the
submitting process exits; one left by a submission killed outright is
removed by the next.
"""

from __future__ import annotations

__all__ = ["STRATEGY_PERIOD_S", "WORKER_SCRATCH_PREFIX", "LocalSite"]

import atexit
import shlex
import shutil

import parsl.config
from lsst.ctrl.bps.parsl.configuration import get_bps_config_value
from lsst.ctrl.bps.parsl.sites import Local
from parsl.executors import HighThroughputExecutor
from parsl.executors.base import ParslExecutor
from parsl.providers import LocalProvider

from ._scratch import make_scratch_dir, remove_stale_scratch

STRATEGY_PERIOD_S = 0.5
"""Seconds between two polls of parsl's scaling strategy (and of the state of its worker pool)."""

WORKER_SCRATCH_PREFIX = "radio_clean-parsl-"
"""Prefix of the temporary directory of a submission's worker pools."""

_SOCKET_PATH_MAX = 107
"""Longest path of a Unix socket (``sun_path`` less its terminating null), on Linux."""

_MANAGER_SOCKET_SUFFIX = len("/pymp-12345678/listener-12345678")
"""What multiprocessing adds to the temporary directory for a manager's socket."""


class LocalSite(Local):
    """`lsst.ctrl.bps.parsl.sites.Local` with parsl's scaling strategy polled every `STRATEGY_PERIOD_S` s
    and worker pools whose temporary directory is removed after the submission.

    Parameters
    ----------
    *args : `~typing.Any`
        Passed on to `lsst.ctrl.bps.parsl.sites.Local`.
    **kwargs : `~typing.Any`
        Passed on to `lsst.ctrl.bps.parsl.sites.Local`.
    """

    def get_executors(self) -> list[ParslExecutor]:
        """Get the local executor, its worker pools started with a temporary directory of their own.

        Returns
        -------
        executors : `list` [`parsl.executors.base.ParslExecutor`]
            The one executor, labelled ``local``, with ``site.<computeSite>.cores`` workers.
        """
        remove_stale_scratch(WORKER_SCRATCH_PREFIX)
        worker_tmpdir = make_scratch_dir(WORKER_SCRATCH_PREFIX)
        # Registered before parsl's own exit hook, so it runs after the worker pools are stopped.
        atexit.register(shutil.rmtree, worker_tmpdir, ignore_errors=True)
        worker_init = f"export TMPDIR={shlex.quote(worker_tmpdir)}"
        if len(worker_tmpdir) + _MANAGER_SOCKET_SUFFIX > _SOCKET_PATH_MAX:
            # The worker pool could not make its socket there: better a directory left than no pool.
            worker_init = ""
        cores = get_bps_config_value(self.site, "cores", int, required=True)
        provider = LocalProvider(worker_init=worker_init)
        return [HighThroughputExecutor("local", provider=provider, max_workers_per_node=cores)]

    def get_parsl_config(self) -> parsl.config.Config:
        """Get the parsl configuration of the base class, with a shorter strategy period.

        Returns
        -------
        config : `parsl.config.Config`
            The configuration parsl runs the step's jobs with.
        """
        config = super().get_parsl_config()
        config.strategy_period = STRATEGY_PERIOD_S
        return config
