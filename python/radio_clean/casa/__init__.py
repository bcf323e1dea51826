"""The bridge to casatools: set-up, CASA's log, MeasurementSets, images and imaging.

Every call into casatools goes through this package so that the offline site
configuration is in force and CASA's log ends up in Python logging. Importing
it changes nothing in the process: `set_up_casa` does, explicitly or at the
first casatools call.
"""

from ._engine import *  # noqa: F403
from ._images import *  # noqa: F403
from ._log import *  # noqa: F403
from ._ms import *  # noqa: F403
from ._setup import *  # noqa: F403
from ._synthesis import *  # noqa: F403
