"""Radio-interferometric synthesis imaging (CLEAN) as Rubin Gen3 PipelineTasks."""

from ._environment import configure_casa_environment

configure_casa_environment()

from .version import __version__  # noqa: E402
