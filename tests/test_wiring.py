"""The wiring of the tasks and pipelines, checked without CASA imaging.

Each task gets one quantum per configuration in a small test repository with
radio_clean's dimension universe and storage classes
(`lsst.daf.butler.tests.makeTestRepo`), run with `lsst.pipe.base.testUtils`
(``runTestQuantum(..., mockRun=True)``): its connections — after the pruning
in the connections' ``__init__`` — must name exactly the dataset types of that
configuration, ``runQuantum`` must hand each input to the right argument of
``run``, and what ``run`` returns must fill every output. Every shipped
pipeline and every generated layout is resolved against the repository for
each configuration and step of the loop, and their dataset types registered
together, so that two configurations can never define one dataset type
differently.
"""

import dataclasses
import os

import numpy as np
import pytest
from astropy.wcs import WCS
from lsst.daf.butler import Config
from lsst.daf.butler.tests import addDatasetType, makeTestCollection, makeTestRepo
from lsst.pipe.base import Pipeline, Struct
from lsst.pipe.base.pipeline import LabelSpecifier
from lsst.pipe.base.pipelineIR import ContractError
from lsst.pipe.base.testUtils import (
    assertValidInitOutput,
    assertValidOutput,
    getInitInputs,
    makeQuantum,
    runTestQuantum,
)

from radio_clean.automask import AutoMaskState
from radio_clean.image import RadioImage
from radio_clean.loop import CleanLoop, LoopError
from radio_clean.ms import MeasurementSetHandle
from radio_clean.pipeline import LAYOUTS, SHIPPED_PARAMETERS, STEPS, clean_pipeline, pipeline_for, to_yaml
from radio_clean.repo import DIMENSIONS_CONFIG, SEED_CONFIG
from radio_clean.tasks.auto_mask import AutoMaskTask
from radio_clean.tasks.deconvolve import DeconvolveTask
from radio_clean.tasks.gather_residual import GatherResidualTask
from radio_clean.tasks.major_cycle import MajorCycleTask
from radio_clean.tasks.make_psf import MakePsfTask
from radio_clean.tasks.restore import RestoreTask

PIPELINES = os.path.join(os.path.dirname(__file__), os.pardir, "pipelines")

INSTRUMENT, FIELD, BAND = "VLA", "3C273", "8085MHz-64ch"
OBSERVATIONS = (1, 2)
CHUNK = {"id": 1, "chan_start": 16, "chan_stop": 32}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A registry with radio_clean's universe and storage classes (in-memory datastore), one data ID each."""
    root = str(tmp_path_factory.mktemp("wiring"))
    butler = makeTestRepo(root, config=Config(SEED_CONFIG), dimensionConfig=Config(DIMENSIONS_CONFIG))
    registry = butler.registry
    registry.insertDimensionData("instrument", {"name": INSTRUMENT})
    registry.insertDimensionData("field", {"instrument": INSTRUMENT, "name": FIELD})
    registry.insertDimensionData("band", {"instrument": INSTRUMENT, "name": BAND})
    registry.insertDimensionData("channel_chunk", {"instrument": INSTRUMENT, "band": BAND, **CHUNK})
    registry.insertDimensionData(
        "observation", *({"instrument": INSTRUMENT, "id": i, "name": f"obs{i}"} for i in OBSERVATIONS)
    )
    for i in OBSERVATIONS:
        observed = {"instrument": INSTRUMENT, "observation": i}
        registry.insertDimensionData("observation_field", {**observed, "field": FIELD, "field_ids": "0"})
        registry.insertDimensionData("observation_band", {**observed, "band": BAND, "spw_ids": "0"})
    yield root, butler
    butler.close()


def _terms(base, count, suffix=""):
    """``_terms("model", 3, "_c4")`` -> model_c4, model_tt1_c4, model_tt2_c4."""
    return [f"{base}{suffix}"] + [f"{base}_tt{term}{suffix}" for term in range(1, count)]


def _psf_products(psf_terms=1, mosaic=False):
    names = ["pb", *_terms("psf", psf_terms), *_terms("sumwt", psf_terms)]
    return names + (_terms("weight", psf_terms) if mosaic else [])


def _tagged_image(dataset_type, observation=None):
    """A 2x2 image whose provenance says which dataset (and observation) it is."""
    wcs = WCS(naxis=4)
    wcs.wcs.ctype = ["RA---SIN", "DEC--SIN", "FREQ", "STOKES"]
    wcs.wcs.cdelt = [-1e-4, 1e-4, 1e6, 1]
    wcs.wcs.crval = [187.0, 2.0, 8.0e9, 1]
    wcs.wcs.specsys = "LSRK"
    provenance = {"dataset": dataset_type}
    if observation is not None:
        provenance["observation"] = observation
    return RadioImage(np.zeros((1, 1, 2, 2)), wcs, provenance=provenance)


def _input_object(connection, data_id):
    if connection.storageClass == "RadioImage":
        has_observation = "observation" in data_id.dimensions.names
        return _tagged_image(connection.name, int(data_id["observation"]) if has_observation else None)
    if connection.storageClass == "MeasurementSet":
        return MeasurementSetHandle(path=f"/data/obs{data_id['observation']}.ms")
    if connection.storageClass == "AutoMaskState":
        return AutoMaskState.initial((1, 1, 2, 2))
    return {"dataset": connection.name}


def _tag(image):
    return image.provenance["dataset"]


@dataclasses.dataclass
class Quantum:
    """One task quantum run with ``mockRun``: its connections and what ``run`` was given."""

    task: object
    inputs: list[str]
    outputs: list[str]
    dimensions: set[str]
    run_arguments: dict


def run_quantum(repo, task_class, *, parameters=None, templates=None, observation=None, **settings):
    """Run ``task_class`` on one quantum with ``mockRun=True`` in a new RUN collection.

    ``parameters`` are tclean parameters, ``templates`` connection templates
    (``cycle``, ``previous``), ``settings`` other config fields
    (``channel_chunks``...); ``observation`` the quantum's observation when it
    has that dimension.
    """
    root, seed_butler = repo
    config = task_class.ConfigClass()
    for name, value in (parameters or {}).items():
        setattr(config.parameters, name, value)
    for name, value in (templates or {}).items():
        setattr(config.connections, name, value)
    for name, value in settings.items():
        setattr(config, name, value)
    config.validate()
    config.freeze()
    butler = makeTestCollection(seed_butler)
    task = task_class(config=config, initInputs=getInitInputs(butler, config))
    assertValidInitOutput(task)

    connections = config.ConnectionsClass(config=config)
    quantum_id = {"instrument": INSTRUMENT, "field": FIELD, "band": BAND}
    if "channel_chunk" in connections.dimensions:
        quantum_id["channel_chunk"] = CHUNK["id"]
    if "observation" in connections.dimensions:
        quantum_id["observation"] = observation
    quantum_id = butler.registry.expandDataId(quantum_id)
    io_data_ids = {}
    for name in connections.inputs | connections.outputs:
        connection = getattr(connections, name)
        addDatasetType(butler, connection.name, set(connection.dimensions), connection.storageClass)
        if connection.multiple and "observation" not in quantum_id.dimensions.names:
            ids = [
                butler.registry.expandDataId(quantum_id, observation=o).subset(connection.dimensions)
                for o in OBSERVATIONS
            ]
        else:
            ids = [butler.registry.expandDataId(quantum_id.subset(connection.dimensions))]
        if name in connections.inputs:
            for data_id in ids:
                butler.put(_input_object(connection, data_id), connection.name, data_id)
        io_data_ids[name] = ids if connection.multiple else ids[0]
    quantum = makeQuantum(task, butler, quantum_id, io_data_ids)
    run = runTestQuantum(task, butler, quantum, mockRun=True)
    run.assert_called_once()

    def names(group):
        return sorted(getattr(connections, name).name for name in group)

    return Quantum(
        task=task,
        inputs=names(connections.inputs),
        outputs=names(connections.outputs),
        dimensions=set(connections.dimensions),
        run_arguments=run.call_args.kwargs,
    )


def assert_run_fills_outputs(quantum, names, **objects):
    """``run`` returning ``names`` (as its code names them) fills every output connection."""
    image = _tagged_image("output")
    assertValidOutput(quantum.task, Struct(**{name: objects.get(name, image) for name in names}))


IMAGE_DIMENSIONS = {"instrument", "field", "band"}

# ---------------------------------------------------------------------------------------------------------
# MakePsfTask


@pytest.mark.parametrize(
    "parameters, settings, outputs",
    [
        ({}, {}, _psf_products()),
        ({"deconvolver": "mtmfs", "nterms": 1}, {}, _psf_products(1)),
        ({"deconvolver": "mtmfs", "nterms": 2}, {}, _psf_products(3)),
        ({"deconvolver": "mtmfs", "nterms": 3}, {}, _psf_products(5)),
        ({"gridder": "mosaic"}, {}, _psf_products(mosaic=True)),
        ({"gridder": "mosaic", "deconvolver": "mtmfs"}, {}, _psf_products(3, mosaic=True)),
        ({"weighting": "briggs"}, {"partition_by_observation": True}, [*_psf_products(), "weight_density"]),
        ({"weighting": "natural"}, {"partition_by_observation": True}, _psf_products()),
        ({"specmode": "cube"}, {"channel_chunks": True}, ["cube_" + name for name in _psf_products()]),
    ],
    ids=["continuum", "mtmfs1", "mtmfs2", "mtmfs3", "mosaic", "mosaic-mtmfs2", "by-obs-briggs",
         "by-obs-natural", "cube-chunk"],
)  # fmt: skip
def test_make_psf_connections(repo, parameters, settings, outputs):
    quantum = run_quantum(repo, MakePsfTask, parameters=parameters, **settings)
    assert quantum.inputs == ["visibilities"]
    assert quantum.outputs == sorted(outputs)
    chunked = settings.get("channel_chunks", False)
    assert quantum.dimensions == IMAGE_DIMENSIONS | ({"channel_chunk"} if chunked else set())
    arguments = quantum.run_arguments
    assert [handle.path for handle in arguments["visibilities"]] == ["/data/obs1.ms", "/data/obs2.ms"]
    assert (arguments["field"], arguments["band"]) == (FIELD, BAND)
    assert arguments["channels"] == ((CHUNK["chan_start"], CHUNK["chan_stop"]) if chunked else None)
    # run returns psf_product_names(parameters), and weight_density when the major cycles share it.
    made = [name.removeprefix("cube_") for name in outputs]
    assert_run_fills_outputs(quantum, made)


# ---------------------------------------------------------------------------------------------------------
# MajorCycleTask


@pytest.mark.parametrize(
    "parameters, cycle, inputs, outputs",
    [
        ({}, "c0", _psf_products(), ["residual_c0"]),
        ({}, "c3", [*_psf_products(), "model_c3"], ["residual_c3"]),
        ({"deconvolver": "mtmfs", "nterms": 1}, "c3", [*_psf_products(), "model_c3"], ["residual_c3"]),
        (
            {"deconvolver": "mtmfs", "nterms": 2},
            "c3",
            [*_psf_products(3), *_terms("model", 2, "_c3")],
            _terms("residual", 2, "_c3"),
        ),
        (
            {"deconvolver": "mtmfs", "nterms": 3},
            "c0",
            _psf_products(5),
            _terms("residual", 3, "_c0"),
        ),
        (
            {"deconvolver": "mtmfs", "nterms": 3},
            "c3",
            [*_psf_products(5), *_terms("model", 3, "_c3")],
            _terms("residual", 3, "_c3"),
        ),
        ({"gridder": "mosaic"}, "c3", [*_psf_products(mosaic=True), "model_c3"], ["residual_c3"]),
    ],
    ids=["dirty", "cycle3", "mtmfs1", "mtmfs2", "mtmfs3-dirty", "mtmfs3", "mosaic"],
)
def test_major_cycle_connections(repo, parameters, cycle, inputs, outputs):
    quantum = run_quantum(repo, MajorCycleTask, parameters=parameters, templates={"cycle": cycle})
    assert quantum.inputs == sorted(["visibilities", *inputs])
    assert quantum.outputs == sorted(outputs)
    assert quantum.dimensions == IMAGE_DIMENSIONS
    arguments = quantum.run_arguments
    assert {name: _tag(image) for name, image in arguments["psf_products"].items()} == {
        name: name for name in inputs if not name.startswith("model")
    }
    models = arguments["model"]
    if cycle == "c0":
        assert models is None
    else:
        assert {name: _tag(image) for name, image in models.items()} == {
            name.removesuffix("_c3"): name for name in inputs if name.startswith("model")
        }
    assert arguments["weight_density"] is None
    assert_run_fills_outputs(quantum, [name.removesuffix(f"_{cycle}") for name in outputs])


def test_major_cycle_per_observation_connections(repo):
    """Partitioned by observation: one quantum per observation, its share named partial_residual_cN."""
    quantum = run_quantum(
        repo,
        MajorCycleTask,
        parameters={"weighting": "briggs", "deconvolver": "mtmfs", "nterms": 2},
        templates={"cycle": "c3"},
        observation=2,
        partition_by_observation=True,
    )
    assert quantum.dimensions == IMAGE_DIMENSIONS | {"observation"}
    assert quantum.inputs == sorted(
        ["visibilities", "weight_density", *_psf_products(3), *_terms("model", 2, "_c3")]
    )
    assert quantum.outputs == ["partial_residual_c3", "partial_residual_tt1_c3"]
    arguments = quantum.run_arguments
    assert [handle.path for handle in arguments["visibilities"]] == ["/data/obs2.ms"]
    assert _tag(arguments["weight_density"]) == "weight_density"
    assert _tag(arguments["model"]["model_tt1"]) == "model_tt1_c3"
    assert_run_fills_outputs(quantum, ["residual", "residual_tt1"])

    # Natural weights need no shared weight density; the dirty image no model.
    quantum = run_quantum(
        repo, MajorCycleTask, templates={"cycle": "c0"}, observation=1, partition_by_observation=True
    )
    assert quantum.inputs == sorted(["visibilities", *_psf_products()])
    assert quantum.outputs == ["partial_residual_c0"]
    assert quantum.run_arguments["model"] is None and quantum.run_arguments["weight_density"] is None


def test_major_cycle_chunk_connections(repo):
    quantum = run_quantum(
        repo, MajorCycleTask, parameters={"specmode": "cube"}, templates={"cycle": "c3"}, channel_chunks=True
    )
    assert quantum.dimensions == IMAGE_DIMENSIONS | {"channel_chunk"}
    assert quantum.inputs == sorted(
        ["visibilities", "cube_model_c3", *("cube_" + n for n in _psf_products())]
    )
    assert quantum.outputs == ["cube_residual_c3"]
    assert quantum.run_arguments["channels"] == (CHUNK["chan_start"], CHUNK["chan_stop"])
    assert _tag(quantum.run_arguments["model"]["model"]) == "cube_model_c3"


# ---------------------------------------------------------------------------------------------------------
# GatherResidualTask


@pytest.mark.parametrize("nterms", [1, 2, 3])
def test_gather_residual_connections(repo, nterms):
    parameters = {"deconvolver": "mtmfs", "nterms": nterms, "weighting": "briggs"}
    quantum = run_quantum(repo, GatherResidualTask, parameters=parameters, templates={"cycle": "c3"})
    assert quantum.dimensions == IMAGE_DIMENSIONS
    partials = _terms("partial_residual", nterms, "_c3")
    assert quantum.inputs == sorted(["visibilities", *_psf_products(2 * nterms - 1), *partials])
    assert quantum.outputs == _terms("residual", nterms, "_c3")
    shares = quantum.run_arguments["partial_residuals"]
    assert sorted(shares) == _terms("residual", nterms)
    for name, images in shares.items():
        # Every observation's share of each term, and nothing else.
        assert sorted((_tag(image), image.provenance["observation"]) for image in images) == [
            (f"partial_{name}_c3", observation) for observation in OBSERVATIONS
        ]
    assert_run_fills_outputs(quantum, _terms("residual", nterms))


# ---------------------------------------------------------------------------------------------------------
# AutoMaskTask and DeconvolveTask (first cycle, later cycles)

FIRST = {"cycle": "c1", "previous": "c0"}
LATER = {"cycle": "c4", "previous": "c3"}
PREVIOUS_STATE = ["mask_c3", "model_c3", "summary_c3"]


@pytest.mark.parametrize(
    "parameters, settings, templates, inputs, outputs",
    [
        ({}, {}, FIRST, ["residual_c0"], ["mask_c1"]),
        ({}, {}, LATER, ["residual_c3", *PREVIOUS_STATE], ["mask_c4"]),
        ({"usemask": "pb", "pbmask": 0.5}, {}, LATER, ["residual_c3", *PREVIOUS_STATE], ["mask_c4"]),
        ({"usemask": "auto-multithresh"}, {}, FIRST, ["residual_c0"], ["automask_state_c1", "mask_c1"]),
        (
            {"usemask": "auto-multithresh"},
            {},
            LATER,
            ["residual_c3", "automask_state_c3", *PREVIOUS_STATE],
            ["automask_state_c4", "mask_c4"],
        ),
        (
            {"usemask": "auto-multithresh"},
            {"implementation": "casatools"},
            LATER,
            ["residual_c3", *PREVIOUS_STATE],
            ["mask_c4"],
        ),
        (
            {"deconvolver": "mtmfs", "nterms": 3},
            {},
            LATER,
            [*_terms("residual", 3, "_c3"), *_terms("model", 3, "_c3"), "mask_c3", "summary_c3"],
            ["mask_c4"],
        ),
    ],
    ids=["user-first", "user-later", "pb-later", "automask-first", "automask-later", "automask-casatools",
         "mtmfs3-later"],
)  # fmt: skip
def test_auto_mask_connections(repo, parameters, settings, templates, inputs, outputs):
    quantum = run_quantum(repo, AutoMaskTask, parameters=parameters, templates=templates, **settings)
    psf_terms = 5 if parameters.get("deconvolver") == "mtmfs" else 1
    assert quantum.inputs == sorted(["visibilities", *_psf_products(psf_terms), *inputs])
    assert quantum.outputs == sorted(outputs)
    arguments = quantum.run_arguments
    previous = templates["previous"]
    assert {name: _tag(image) for name, image in arguments["residual"].items()} == {
        name.removesuffix(f"_{previous}"): name for name in inputs if name.startswith("residual")
    }
    if previous == "c0":
        assert arguments["model"] is None and arguments["previous_summary"] is None
        assert arguments["previous_mask"] is None and arguments["previous_state"] is None
    else:
        assert _tag(arguments["model"]["model"]) == "model_c3"
        assert _tag(arguments["previous_mask"]) == "mask_c3"
        assert arguments["previous_summary"] == {"dataset": "summary_c3"}
        numpy_state = "automask_state_c3" in inputs
        assert isinstance(arguments["previous_state"], AutoMaskState) == numpy_state
    state = {"state": AutoMaskState.initial((1, 1, 2, 2))}
    assert_run_fills_outputs(quantum, ["mask", *state] if "state" in str(outputs) else ["mask"], **state)


@pytest.mark.parametrize(
    "parameters, templates, inputs, outputs",
    [
        ({}, FIRST, ["residual_c0", "mask_c1"], ["model_c1", "summary_c1"]),
        ({}, LATER, ["residual_c3", "mask_c4", "model_c3", "summary_c3"], ["model_c4", "summary_c4"]),
        (
            {"deconvolver": "mtmfs", "nterms": 1},
            LATER,
            ["residual_c3", "mask_c4", "model_c3", "summary_c3"],
            ["model_c4", "summary_c4"],
        ),
        (
            {"deconvolver": "mtmfs", "nterms": 2},
            FIRST,
            [*_terms("residual", 2, "_c0"), "mask_c1"],
            [*_terms("model", 2, "_c1"), "summary_c1"],
        ),
        (
            {"deconvolver": "mtmfs", "nterms": 3},
            LATER,
            [*_terms("residual", 3, "_c3"), *_terms("model", 3, "_c3"), "mask_c4", "summary_c3"],
            [*_terms("model", 3, "_c4"), "summary_c4"],
        ),
        (
            {"gridder": "mosaic"},
            LATER,
            ["residual_c3", "mask_c4", "model_c3", "summary_c3"],
            ["model_c4", "summary_c4"],
        ),
    ],
    ids=["first", "later", "mtmfs1", "mtmfs2-first", "mtmfs3-later", "mosaic"],
)
def test_deconvolve_connections(repo, parameters, templates, inputs, outputs):
    quantum = run_quantum(repo, DeconvolveTask, parameters=parameters, templates=templates)
    nterms = parameters.get("nterms", 1) if parameters.get("deconvolver") == "mtmfs" else 1
    mosaic = parameters.get("gridder") == "mosaic"
    assert quantum.inputs == sorted(["visibilities", *_psf_products(2 * nterms - 1, mosaic), *inputs])
    assert quantum.outputs == sorted(outputs)
    arguments = quantum.run_arguments
    assert _tag(arguments["mask"]) == f"mask_{templates['cycle']}"
    assert sorted(arguments["psf_products"]) == _psf_products(2 * nterms - 1, mosaic)
    if templates["previous"] == "c0":
        assert arguments["model"] is None and arguments["previous_summary"] is None
    else:
        assert sorted(_tag(image) for image in arguments["model"].values()) == _terms("model", nterms, "_c3")
        assert arguments["previous_summary"] == {"dataset": "summary_c3"}
    assert_run_fills_outputs(quantum, [*_terms("model", nterms), "summary"], summary={})


def test_deconvolve_and_auto_mask_chunk_connections(repo):
    cube = {"specmode": "cube", "usemask": "auto-multithresh"}
    quantum = run_quantum(repo, AutoMaskTask, parameters=cube, templates=LATER, channel_chunks=True)
    assert quantum.dimensions == IMAGE_DIMENSIONS | {"channel_chunk"}
    assert quantum.outputs == ["cube_automask_state_c4", "cube_mask_c4"]
    assert "cube_automask_state_c3" in quantum.inputs and "cube_summary_c3" in quantum.inputs
    assert quantum.run_arguments["channels"] == (CHUNK["chan_start"], CHUNK["chan_stop"])
    quantum = run_quantum(repo, DeconvolveTask, parameters=cube, templates=LATER, channel_chunks=True)
    assert quantum.outputs == ["cube_model_c4", "cube_summary_c4"]
    assert _tag(quantum.run_arguments["mask"]) == "cube_mask_c4"


# ---------------------------------------------------------------------------------------------------------
# RestoreTask

FINAL = {"previous": "c7", "cycle": "c8"}
QUICK_LOOKS = ["clean_summary", "convergence_png", "image_png"]


@pytest.mark.parametrize(
    "parameters, inputs, outputs",
    [
        ({}, ["residual_c7", "model_c8"], ["image"]),
        ({"pbcor": True}, ["residual_c7", "model_c8"], ["image", "image_pbcor"]),
        (
            {"deconvolver": "mtmfs", "nterms": 1},
            ["residual_c7", "model_c8"],
            ["image"],  # no spectral index from one Taylor term, as in tclean
        ),
        (
            {"deconvolver": "mtmfs", "nterms": 2, "pbcor": True},
            [*_terms("residual", 2, "_c7"), *_terms("model", 2, "_c8")],
            [*_terms("image", 2), "image_pbcor", "alpha", "alpha_error"],
        ),
        (
            {"deconvolver": "mtmfs", "nterms": 3},
            [*_terms("residual", 3, "_c7"), *_terms("model", 3, "_c8")],
            [*_terms("image", 3), "alpha", "alpha_error"],
        ),
    ],
    ids=["continuum", "pbcor", "mtmfs1", "mtmfs2-pbcor", "mtmfs3"],
)
def test_restore_connections(repo, parameters, inputs, outputs):
    quantum = run_quantum(repo, RestoreTask, parameters=parameters, templates=FINAL)
    nterms = parameters.get("nterms", 1) if parameters.get("deconvolver") == "mtmfs" else 1
    assert quantum.inputs == sorted(["visibilities", "summary_c8", *_psf_products(2 * nterms - 1), *inputs])
    assert quantum.outputs == sorted([*outputs, *QUICK_LOOKS])
    arguments = quantum.run_arguments
    residuals, models = arguments["residual"].values(), arguments["model"].values()
    assert sorted(_tag(image) for image in residuals) == _terms("residual", nterms, "_c7")
    assert sorted(_tag(image) for image in models) == _terms("model", nterms, "_c8")
    assert arguments["summary"] == {"dataset": "summary_c8"}
    assert_run_fills_outputs(quantum, [*outputs, *QUICK_LOOKS], clean_summary={})


def test_restore_chunk_connections(repo):
    quantum = run_quantum(
        repo, RestoreTask, parameters={"specmode": "cube"}, templates=FINAL, channel_chunks=True
    )
    assert quantum.dimensions == IMAGE_DIMENSIONS | {"channel_chunk"}
    assert quantum.outputs == ["cube_" + name for name in sorted(["image", *QUICK_LOOKS])]
    assert quantum.run_arguments["channels"] == (CHUNK["chan_start"], CHUNK["chan_stop"])


def test_configs_refuse_a_cycle_out_of_place():
    config = AutoMaskTask.ConfigClass()
    config.connections.cycle = "c0"
    with pytest.raises(ValueError, match="AutoMaskTask runs in cycles c1 and later"):
        config.validate()
    config = DeconvolveTask.ConfigClass()
    config.connections.cycle, config.connections.previous = "c3", "c1"
    with pytest.raises(ValueError, match="with connections.previous = c2"):
        config.validate()
    config = MajorCycleTask.ConfigClass()
    config.partition_by_observation, config.parameters.specmode = True, "cube"
    with pytest.raises(ValueError, match="partition_by_observation is for continuum"):
        config.validate()


# ---------------------------------------------------------------------------------------------------------
# Pipelines: every shipped pipeline and generated layout, resolved for each configuration and step

CONFIGURATIONS = {
    "continuum": {},
    "mtmfs1": {"deconvolver": "mtmfs", "nterms": 1},
    "mtmfs2": {"deconvolver": "mtmfs", "nterms": 2},
    "mtmfs3": {"deconvolver": "mtmfs", "nterms": 3},
    "mosaic": {"gridder": "mosaic", "deconvolver": "mtmfs"},
    "pbcor": {"pbcor": True},
    "auto-multithresh": {"usemask": "auto-multithresh"},
    "natural": {"weighting": "natural"},
}
SHIPPED = {
    "whole": "ContinuumImaging.yaml",
    "by_observation": "ContinuumImagingByObservation.yaml",
    "chunked": "CubeImaging.yaml",
}
LOOP = {"start": ("c0", "c1"), "cycle": ("c3", "c4"), "finish": ("c7", "c8")}


def _configured(pipeline, parameters):
    """Set tclean parameters as the loop does: pipeline parameters if declared, else in every task."""
    declared = pipeline._pipelineIR.parameters.mapping
    labels = list(pipeline.task_labels)
    for name, value in parameters.items():
        if name in declared:
            pipeline.addConfigOverride("parameters", name, value)
        else:
            for label in labels:
                pipeline.addConfigOverride(label, f"parameters.{name}", value)
    return pipeline


def _steps(text):
    """Each step (subset) of the pipeline in ``text``, loaded once; copies are configured."""
    pipeline = Pipeline.fromString(text)
    return {step: pipeline.subsetFromLabels(LabelSpecifier({step})) for step in STEPS}


def _resolve_steps(butler, steps, parameters, *, register=True):
    """Resolve every step against the registry and register its dataset types; return them by step."""
    dataset_types = {}
    for step, base in steps.items():
        pipeline = _configured(Pipeline.fromPipeline(base), parameters)
        major, minor = LOOP[step]
        pipeline.addConfigOverride("parameters", "major_cycle", major)
        pipeline.addConfigOverride("parameters", "minor_cycle", minor)
        graph = pipeline.to_graph(registry=butler.registry)
        if register:
            graph.register_dataset_types(butler)
        dataset_types[step] = {name: node.dimensions.names for name, node in graph.dataset_types.items()}
    return dataset_types


@pytest.mark.parametrize("layout", LAYOUTS)
def test_shipped_and_generated_pipelines_resolve_for_every_configuration(repo, layout):
    _, butler = repo
    with open(os.path.join(PIPELINES, SHIPPED[layout])) as stream:
        shipped_steps = _steps(stream.read())
    for name, configuration in CONFIGURATIONS.items():
        parameters = {**configuration, **({"specmode": "cube"} if layout == "chunked" else {})}
        if layout == "chunked" and parameters.get("deconvolver") == "mtmfs":
            # mtmfs is continuum: tclean (and radio_clean) refuse it with a cube.
            parameters.pop("deconvolver")
            parameters.pop("nterms", None)
        shipped = _resolve_steps(butler, shipped_steps, parameters)
        generated_mapping = pipeline_for(
            {**SHIPPED_PARAMETERS, **parameters}, n_observations=2 if layout == "by_observation" else 1
        )
        assert generated_mapping == clean_pipeline(layout, {**SHIPPED_PARAMETERS, **parameters})
        # Registered once, by the shipped pipeline, whose dataset types these must be.
        generated = _resolve_steps(butler, _steps(to_yaml(generated_mapping)), {}, register=False)
        assert generated == shipped, name
        prefix = "cube_" if layout == "chunked" else ""
        # tclean's default nterms is 2.
        nterms = parameters.get("nterms", 2) if parameters.get("deconvolver") == "mtmfs" else 1
        cycle = shipped["cycle"]
        assert [f"{prefix}residual{t}_c3" in cycle for t in ("", "_tt1", "_tt2")] == [
            term < nterms for term in range(3)
        ], name
        assert (f"{prefix}automask_state_c4" in cycle) == (name == "auto-multithresh"), name
        assert (f"{prefix}image_pbcor" in shipped["finish"]) == (name == "pbcor"), name
        assert (f"{prefix}weight" in shipped["start"]) == (name == "mosaic"), name
        if layout == "by_observation":
            assert cycle["partial_residual_c3"] == {"instrument", "field", "band", "observation"}
            assert ("weight_density" in shipped["start"]) == (name != "natural"), name
        if layout == "chunked":
            assert cycle["cube_residual_c3"] == {"instrument", "field", "band", "channel_chunk"}


# ---------------------------------------------------------------------------------------------------------
# Contracts: the same tclean parameters in every task


@pytest.mark.parametrize("subset", ["", "#start", "#cycle"])
def test_one_task_with_other_tclean_parameters_breaks_the_contract(subset):
    pipeline = Pipeline.from_uri(os.path.join(PIPELINES, "ContinuumImaging.yaml") + subset)
    pipeline.addConfigOverride("deconvolve", "parameters.niter", 5)
    with pytest.raises(ContractError) as caught:
        pipeline.to_graph()
    assert str(caught.value) == (
        "Contract(s) 'autoMask.parameters == deconvolve.parameters' were not satisfied: autoMask and "
        "deconvolve must have the same tclean parameters; set them for every task (pipeline parameters, "
        "-c parameters:NAME=VALUE), not for one."
    )
    # The same value for every task is fine.
    pipeline = Pipeline.from_uri(os.path.join(PIPELINES, "ContinuumImaging.yaml") + subset)
    pipeline.addConfigOverride("parameters", "niter", 5)
    assert {task.config.parameters.niter for task in pipeline.to_graph().tasks.values()} == {5}


def test_clean_loop_refuses_a_broken_contract_in_one_sentence(repo):
    root, butler = repo
    loop = CleanLoop(
        root,
        pipeline_uri=os.path.join(PIPELINES, "CubeImaging.yaml"),
        inputs=["raw/visibilities"],
        output="images/contract",
        config_overrides=[("cubeMakePsf", "parameters.imsize", "[64]")],
    )
    with pytest.raises(LoopError) as caught:
        loop.run()
    assert str(caught.value) == (
        f"Pipeline {os.path.join(PIPELINES, 'CubeImaging.yaml')} cannot be used with these "
        "settings: Contract(s) 'cubeMakePsf.parameters == cubeMajorCycle.parameters' were not satisfied: "
        "cubeMakePsf and cubeMajorCycle must have the same tclean parameters; set them for every task "
        "(pipeline parameters, -c parameters:NAME=VALUE), not for one."
    )
    assert list(butler.collections.query("images/*")) == []


@pytest.mark.parametrize(
    "old_name",
    [
        "radio_clean.image.RadioImageFitsFormatter",
        "radio_clean.automask.AutoMaskStateFormatter",
        "radio_clean.ms.MeasurementSetFormatter",
    ],
)
def test_formatters_import_by_the_names_older_repositories_recorded(old_name):
    """Datastore records of datasets written before the formatters moved name them by their old paths."""
    from lsst.utils import doImport

    import radio_clean.formatters

    class_name = old_name.rpartition(".")[2]
    assert doImport(old_name) is getattr(radio_clean.formatters, class_name)
    seed = Config(SEED_CONFIG)
    assert f"radio_clean.formatters.{class_name}" in seed["datastore", "formatters"].values()
