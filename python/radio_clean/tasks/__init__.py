"""The CLEAN PipelineTasks, one module per task."""

from .._zipfix import fix_zipfile_shared_seek

# Every process that runs these tasks (or the middleware's mocks of them) imports this package
# while it reads the pipeline of a quantum graph, before it reads the graph's quanta: a bps job's
# `pipetask run-qbb --qgraph-node-id` reads only its own quanta, which fails with EOFError in
# zipfile without this fix (radio_clean._zipfix says why). The one change this import makes to
# another module, on purpose.
fix_zipfile_shared_seek()
