"""The quantum graph of the next cycle, made from the graph of the one before without registry queries.

The quanta of cycle N+1 are those of cycle N for the chains that go on: the
same tasks on the same data IDs, reading the same constant datasets (the
MeasurementSets, MakePsf's images) and what cycle N made. Finding that with a
data-ID query over the whole repository (`AllDimensionsQuantumGraphBuilder`)
costs a few tenths of a second a cycle, more than a small image's major
cycle; here it is copied from the previous graph, as Rubin's prompt processing
does with `TrivialQuantumGraphBuilder` for data IDs it already knows. The
finish step's RestoreTask has no quanta in the previous graph: the quanta of
a task there with the same dimensions (DeconvolveTask) serve as its
templates (their data IDs and the MeasurementSets they read); the rest of
what RestoreTask reads the previous graph read or made.
"""

from __future__ import annotations

__all__ = ["NextCycleGraphBuilder", "UnknownInputError"]

from typing import Any

from lsst.daf.butler import Butler, DataCoordinate, DatasetRef
from lsst.pipe.base.pipeline_graph import PipelineGraph
from lsst.pipe.base.quantum_graph import PredictedQuantumGraph
from lsst.pipe.base.quantum_graph_builder import QuantumGraphBuilder
from lsst.pipe.base.quantum_graph_skeleton import QuantumGraphSkeleton


class UnknownInputError(LookupError):
    """An input of the next cycle is neither read nor made by the previous graph's quanta."""


class NextCycleGraphBuilder(QuantumGraphBuilder):
    """Build the graph of a loop step from the graph of the step before.

    Parameters
    ----------
    pipeline_graph : `~lsst.pipe.base.pipeline_graph.PipelineGraph`
        The step's pipeline, resolved.
    butler : `~lsst.daf.butler.Butler`
        The repository.
    previous : `~lsst.pipe.base.quantum_graph.PredictedQuantumGraph`
        The graph of the previous step; every task of ``pipeline_graph`` has
        quanta in it.
    keep : `~collections.abc.Callable`
        Called with a quantum's data ID; only quanta for which it returns
        `True` (chains that go on) are copied.
    **kwargs
        Forwarded to `~lsst.pipe.base.quantum_graph_builder.QuantumGraphBuilder`.
    """

    def __init__(
        self,
        pipeline_graph: PipelineGraph,
        butler: Butler,
        *,
        previous: PredictedQuantumGraph,
        keep,
        **kwargs: Any,
    ) -> None:
        super().__init__(pipeline_graph, butler, **kwargs)
        self._keep = keep
        nodes = previous.quantum_only_xgraph.nodes
        # Only the quanta of this step's tasks: they read or made every dataset the step reads
        # (building execution quanta is most of the time here, for 10,000s of quanta); all of them for
        # a step with tasks new to the loop (the finish step).
        labels = set(pipeline_graph.tasks)
        if not labels <= set(previous.pipeline_graph.tasks):
            labels = set(previous.pipeline_graph.tasks)
        quanta = previous.build_execution_quanta(
            [quantum_id for quantum_id in nodes if nodes[quantum_id]["pipeline_node"].label in labels]
        )
        self._template_quanta: dict[str, list[Any]] = {}
        self._known: dict[tuple[str, DataCoordinate], DatasetRef] = {}
        # Dataset type of each input connection of the previous graph's tasks.
        self._template_edges = {
            label: {name: edge.parent_dataset_type_name for name, edge in task_node.inputs.items()}
            for label, task_node in previous.pipeline_graph.tasks.items()
        }
        for quantum_id, quantum in quanta.items():
            self._template_quanta.setdefault(nodes[quantum_id]["pipeline_node"].label, []).append(quantum)
            for refs in (*quantum.inputs.values(), *quantum.outputs.values()):
                for ref in refs:
                    self._known[ref.datasetType.name, ref.dataId] = ref

    def _stand_in(self, task_node) -> tuple[list[Any], dict[str, str]]:
        """Template quanta and connections for a task without quanta in the previous graph."""
        for label, quanta in self._template_quanta.items():
            if quanta[0].dataId.dimensions == task_node.dimensions:
                reads = set(self._template_edges[label].values())
                edges = {
                    edge.connection_name: edge.parent_dataset_type_name
                    for edge in task_node.iter_all_inputs()
                    if edge.parent_dataset_type_name in reads
                }
                return quanta, edges
        raise UnknownInputError(f"The previous graph has no quanta with the dimensions of {task_node.label}.")

    def process_subgraph(self, subgraph: PipelineGraph) -> QuantumGraphSkeleton:
        # Docstring inherited.
        skeleton = QuantumGraphSkeleton(subgraph.tasks)
        # Per dataset type, looked up once rather than once a quantum (the pipeline graph's
        # producer_of walks a networkx view each time).
        produced = {name: subgraph.producer_of(name) is not None for name in subgraph.dataset_types}
        subsets: dict[tuple[DataCoordinate, str], DataCoordinate] = {}

        def subset(data_id: DataCoordinate, name: str) -> DataCoordinate:
            # A chain's quanta share their data ID: each subset is made once a chain.
            key = (data_id, name)
            if key not in subsets:
                subsets[key] = data_id.subset(subgraph.dataset_types[name].dimensions)
            return subsets[key]

        for task_node in subgraph.tasks.values():
            templates = self._template_quanta.get(task_node.label)
            template_edges = self._template_edges.get(task_node.label, {})
            if templates is None:
                # A task new to the loop's steps (restore, in the finish step) takes as templates the
                # quanta of a previous task with the same dimensions: their data IDs, and their inputs
                # of the dataset types it reads too (the MeasurementSets of each chain).
                templates, template_edges = self._stand_in(task_node)
            read_edges = list(task_node.iter_all_inputs())
            for read_edge in read_edges:
                if read_edge.is_prerequisite:
                    raise UnknownInputError(
                        f"{task_node.label}.{read_edge.connection_name} is a prerequisite."
                    )
            write_names = [edge.parent_dataset_type_name for edge in task_node.iter_all_outputs()]
            for template in templates:
                if not self._keep(template.dataId):
                    continue
                quantum_key = skeleton.add_quantum_node(task_node.label, template.dataId)
                for read_edge in read_edges:
                    name = read_edge.parent_dataset_type_name
                    # The same connection of the template quantum: its datasets' data IDs (and the
                    # datasets themselves when the name did not change: MSs, PSF, primary beam...).
                    template_name = template_edges.get(read_edge.connection_name)
                    template_refs = template.inputs.get(template_name, []) if template_name else []
                    if template_name == name:
                        for ref in template_refs:
                            skeleton.add_input_edge(
                                quantum_key, skeleton.add_dataset_node(name, ref.dataId, ref=ref)
                            )
                        continue
                    if template_refs:
                        data_ids = [ref.dataId for ref in template_refs]
                    else:
                        data_ids = [subset(template.dataId, name)]
                    for data_id in data_ids:
                        if produced[name]:
                            key = skeleton.add_dataset_node(name, data_id)
                        else:
                            ref = self._known.get((name, data_id))
                            if ref is None:
                                raise UnknownInputError(f"No {name} for {data_id} in the previous graph.")
                            key = skeleton.add_dataset_node(name, data_id, ref=ref)
                        skeleton.add_input_edge(quantum_key, key)
                for name in write_names:
                    skeleton.add_output_edge(
                        quantum_key, skeleton.add_dataset_node(name, subset(template.dataId, name))
                    )
        return skeleton
