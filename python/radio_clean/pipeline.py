"""Write the CLEAN pipeline YAML: one label per task, the loop's cycle chosen per run.

A quantum graph is fixed when it is built and a pipeline graph has no cycles,
so tclean's major/minor loop cannot be one graph. Each pipeline here holds
every task once, with three subsets that are run one after another, each in
a RUN collection of its own inside one CHAINED output collection:

``start``
    MakePsf, the dirty image (``majorCycle`` with ``major_cycle=c0``) and the
    first mask and minor cycle (``autoMask``, ``deconvolve`` with
    ``minor_cycle=c1``).
``cycle``
    One major cycle ``cN`` and the next mask and minor cycle ``c(N+1)``, run
    again with ``-c parameters:major_cycle=cN -c parameters:minor_cycle=c(N+1)``
    for the chains (field, band, channel chunk) whose summary says CLEAN goes
    on; `radio_clean.loop` does that, as many times as tclean would.
``finish``
    The restored images from the last residual (``major_cycle``) and the model
    and summary of the cycle that stopped (``minor_cycle``).

Images of each cycle keep the cycle in their dataset type name
(``residual_c3``): a task reads the previous state and writes the next, and
a dataset type cannot be both the input and the output of one graph.

``python -m radio_clean.pipeline DIR`` rewrites the shipped pipelines; a test
checks that they are up to date.
"""

from __future__ import annotations

__all__ = [
    "SHIPPED_PARAMETERS",
    "STEPS",
    "clean_pipeline",
    "pipeline_for",
    "same_parameters_contracts",
    "shipped_pipelines",
    "to_yaml",
]

import argparse
import itertools
import os
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

SHIPPED_PARAMETERS: dict[str, Any] = {
    "imsize": [256, 256],
    "cell": ["0.5arcsec"],
    "specmode": "mfs",
    "gridder": "standard",
    "weighting": "briggs",
    "robust": 0.5,
    "deconvolver": "hogbom",
    "niter": 1000,
    "gain": 0.1,
    "threshold": "0.0Jy",
    "usemask": "user",
    "datacolumn": "corrected",
}
"""Pipeline parameters of the shipped pipelines (tclean names); override with ``-c parameters:NAME=VALUE``."""

LOOP_PARAMETERS = {"major_cycle": "c0", "minor_cycle": "c1"}
"""Pipeline parameters that place a run of the ``cycle`` or ``finish`` subset in the loop."""

STEPS = ("start", "cycle", "finish")
"""The pipeline subsets, in the order the loop runs them (``cycle`` as often as needed)."""

LAYOUTS = ("whole", "chunked", "by_observation")
"""``whole``: one chain per field and band; ``chunked``: per channel chunk of a cube;
``by_observation``: continuum with major cycles per observation, gathered."""

TASK_KINDS = ("makePsf", "majorCycle", "gatherResidual", "autoMask", "deconvolve", "restore")
"""The tasks of a CLEAN pipeline; their labels are `label_of` these."""

_TASKS = {
    "makePsf": "radio_clean.tasks.make_psf.MakePsfTask",
    "majorCycle": "radio_clean.tasks.major_cycle.MajorCycleTask",
    "gatherResidual": "radio_clean.tasks.gather_residual.GatherResidualTask",
    "autoMask": "radio_clean.tasks.auto_mask.AutoMaskTask",
    "deconvolve": "radio_clean.tasks.deconvolve.DeconvolveTask",
    "restore": "radio_clean.tasks.restore.RestoreTask",
}

# Which loop parameter fills which connection template of each task.
_TEMPLATES = {
    "majorCycle": {"cycle": "major_cycle"},
    "gatherResidual": {"cycle": "major_cycle"},
    "autoMask": {"cycle": "minor_cycle", "previous": "major_cycle"},
    "deconvolve": {"cycle": "minor_cycle", "previous": "major_cycle"},
    "restore": {"cycle": "minor_cycle", "previous": "major_cycle"},
}


def label_of(kind: str, layout: str) -> str:
    """Task label of a task kind (``makePsf``, ``majorCycle``...) in a pipeline layout.

    Labels name metadata dataset types, whose dimensions must not differ between
    the pipelines of one repository: cube tasks (per chunk) and per-observation
    major cycles get labels of their own.
    """
    if layout == "chunked":
        return f"cube{kind[0].upper()}{kind[1:]}"
    if layout == "by_observation" and kind == "majorCycle":
        return "observationMajorCycle"
    return kind


def _task(kind: str, parameters: Mapping[str, Any], layout: str) -> dict[str, Any]:
    config: dict[str, Any] = {f"parameters.{name}": f"parameters.{name}" for name in parameters}
    if layout == "chunked" and kind != "gatherResidual":
        config["channel_chunks"] = True
    if layout == "by_observation" and kind in ("makePsf", "majorCycle"):
        config["partition_by_observation"] = True
    templates = _TEMPLATES.get(kind, {})
    config.update({f"connections.{name}": f"parameters.{loop}" for name, loop in templates.items()})
    return {"class": _TASKS[kind], "config": config}


def clean_pipeline(layout: str = "whole", parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return a CLEAN pipeline as a YAML-ready mapping.

    Parameters
    ----------
    layout : `str`, optional
        One of `LAYOUTS`.
    parameters : `~collections.abc.Mapping`, optional
        tclean parameters to declare as pipeline parameters (default
        `SHIPPED_PARAMETERS`, with ``specmode=cube`` for ``chunked``); every
        task's ``parameters`` config uses them.

    Returns
    -------
    pipeline : `dict`
        Pipeline definition (description, parameters, tasks, contracts,
        subsets).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"Unknown pipeline layout {layout!r}; one of {', '.join(LAYOUTS)}.")
    if parameters is None:
        parameters = {**SHIPPED_PARAMETERS, "specmode": "cube"} if layout == "chunked" else SHIPPED_PARAMETERS
    clashes = set(parameters) & set(LOOP_PARAMETERS)
    if clashes:
        raise ValueError(f"{', '.join(sorted(clashes))} are loop parameters, not tclean parameters.")
    gathered = layout == "by_observation"
    major = ["majorCycle"] + (["gatherResidual"] if gathered else [])
    kinds = ["makePsf", *major, "autoMask", "deconvolve", "restore"]
    labels = {kind: label_of(kind, layout) for kind in kinds}
    what = {
        "whole": "Continuum (MFS) CLEAN",
        "chunked": "Spectral-cube CLEAN per channel chunk (channel_chunk dimension)",
        "by_observation": "Continuum (MFS) CLEAN with per-observation major cycles",
    }[layout]
    return {
        "description": (
            f"{what} as tclean does it. Run the subsets start, cycle (as often as CLEAN goes on, with "
            "parameters major_cycle=cN and minor_cycle=c(N+1)) and finish, each in a new RUN of one "
            "output collection: radio-clean clean does this (generated by radio_clean.pipeline; do not edit)."
        ),
        "parameters": {**dict(parameters), **LOOP_PARAMETERS},
        "tasks": {labels[kind]: _task(kind, parameters, layout) for kind in kinds},
        "contracts": same_parameters_contracts([labels[kind] for kind in kinds]),
        "subsets": {
            "start": {
                "subset": [labels[kind] for kind in kinds[:-1]],
                "description": "PSF, primary beam, sums of weights, the dirty image, the first mask and "
                "minor cycle.",
            },
            "cycle": {
                "subset": [labels[kind] for kind in kinds[1:-1]],
                "description": "Major cycle major_cycle, then the mask and minor cycle minor_cycle.",
            },
            "finish": {
                "subset": [labels["restore"]],
                "description": "Restored images and quick looks, from residual major_cycle and model and "
                "summary minor_cycle.",
            },
        },
    }


def same_parameters_contracts(labels: Sequence[str]) -> list[dict[str, str]]:
    """Return pipeline contracts that every task has the same tclean parameters.

    One contract per pair of consecutive labels: a subset of consecutive
    tasks (``start``, ``cycle``...) keeps the contracts between its own
    labels when the others are dropped with the tasks they name.
    """
    return [
        {
            "contract": f"{first}.parameters == {second}.parameters",
            "msg": f"{first} and {second} must have the same tclean parameters; set them for every task "
            "(pipeline parameters, -c parameters:NAME=VALUE), not for one.",
        }
        for first, second in itertools.pairwise(labels)
    ]


def pipeline_for(parameters: Mapping[str, Any], *, n_observations: int = 1) -> dict[str, Any]:
    """Return the pipeline for these parameters and data.

    The cube pipeline for ``specmode`` cube or cubedata; for continuum, the
    per-observation one when there is more than one observation.
    """
    if parameters.get("specmode", "mfs") in ("cube", "cubedata"):
        return clean_pipeline("chunked", parameters)
    return clean_pipeline("by_observation" if n_observations > 1 else "whole", parameters)


def to_yaml(pipeline: Mapping[str, Any]) -> str:
    """Render a pipeline mapping as YAML, keys in the order given."""
    return yaml.safe_dump(dict(pipeline), sort_keys=False, default_flow_style=False, width=110)


def shipped_pipelines() -> dict[str, str]:
    """Return the text of every shipped pipeline file, by file name."""
    return {
        "ContinuumImaging.yaml": to_yaml(clean_pipeline("whole")),
        "CubeImaging.yaml": to_yaml(clean_pipeline("chunked")),
        "ContinuumImagingByObservation.yaml": to_yaml(clean_pipeline("by_observation")),
    }


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", help="Where to write the pipeline YAML.")
    args = parser.parse_args(argv)
    for name, text in shipped_pipelines().items():
        with open(os.path.join(args.directory, name), "w") as stream:
            stream.write(text)


if __name__ == "__main__":
    _main()
