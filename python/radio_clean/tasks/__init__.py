"""The CLEAN PipelineTasks, one module per task."""
