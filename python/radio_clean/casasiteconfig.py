# CASA site configuration used by radio_clean (CASASITECONFIG points here unless the user
# set their own). casatools executes this file at import: it makes the measures and
# data tables come from the pinned ``casadata`` wheel, never from the network, and keeps
# casatools from writing casa-*.log files into the working directory (radio_clean
# forwards CASA's log into Python logging instead).
import casadata

measurespath = casadata.datapath
datapath = [casadata.datapath]
measures_auto_update = False
data_auto_update = False
nologfile = True
logfile = "/dev/null"
