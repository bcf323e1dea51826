"""Radio-interferometric synthesis imaging (CLEAN) as Rubin Gen3 PipelineTasks.

Importing radio_clean or any of its modules changes no process state;
`radio_clean.casa.set_up_casa` sets casatools up (``radio-clean`` calls it,
and the first casatools call through `radio_clean.casa` does).
"""

from .version import __version__
