"""parsl's local site for bps (``site.local.class`` of bps/continuum_local.yaml), with less waiting per step.

`lsst.ctrl.bps.parsl.sites.Local` runs a step's jobs in a pool of worker
processes that parsl's scaling strategy starts at one of its polls, every
5 s by default, after the jobs are handed to parsl: each bps step (each
step of the CLEAN loop) waited up to 5 s before its first job could start.
This site is that one, polled every `STRATEGY_PERIOD_S` seconds.
"""

from __future__ import annotations

__all__ = ["STRATEGY_PERIOD_S", "LocalSite"]

import parsl.config
from lsst.ctrl.bps.parsl.sites import Local

STRATEGY_PERIOD_S = 0.5
"""Seconds between two polls of parsl's scaling strategy (and of the state of its worker pool)."""


class LocalSite(Local):
    """`lsst.ctrl.bps.parsl.sites.Local` with parsl's scaling strategy polled every `STRATEGY_PERIOD_S` s.

    Parameters
    ----------
    *args : `~typing.Any`
        Passed on to `lsst.ctrl.bps.parsl.sites.Local`.
    **kwargs : `~typing.Any`
        Passed on to `lsst.ctrl.bps.parsl.sites.Local`.
    """

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
