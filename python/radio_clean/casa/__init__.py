"""The bridge to casatools: set-up, CASA's log, MeasurementSets, images and imaging.

Every call into casatools goes through this package so that the offline site
configuration is in force and CASA's log ends up in Python logging.
"""

from .._environment import configure_casa_environment

configure_casa_environment()

from ._engine import *  # noqa: E402
from ._images import *  # noqa: E402
from ._log import *  # noqa: E402
from ._ms import *  # noqa: E402
from ._synthesis import *  # noqa: E402
