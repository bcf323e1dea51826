"""A cycle step run alone, in a fresh process, equals the same step run warm inside the loop.

``radio-clean image`` runs a chain's quanta one after another in one process,
keeping CASA's tools, scratch images and the images it made in memory. The
same step re-run by ``pipetask`` in a new process, from the datasets in the
repository, starts cold; its outputs must be the loop's, bit for bit.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from clean_utils import run_clean
from lsst.daf.butler import Butler

_CASES = {
    "hogbom-automask": {
        "imsize": [96],
        "cell": ["1arcsec"],
        "niter": 500,
        "cyclefactor": 3.0,
        "weighting": "briggs",
        "usemask": "auto-multithresh",
        "datacolumn": "data",
    },
    "mtmfs-usermask": {
        "imsize": [96],
        "cell": ["1arcsec"],
        "niter": 300,
        "cyclefactor": 3.0,
        "deconvolver": "mtmfs",
        "nterms": 2,
        "mask": "circle[[48pix,48pix],10pix]",
        "datacolumn": "data",
    },
}


@pytest.mark.parametrize("name", list(_CASES))
def test_cycle_step_alone_equals_warm(name, demo_ms_dir, tmp_path):
    warm = run_clean([str(demo_ms_dir / "3C273XC1.ms")], parameters=_CASES[name], directory=tmp_path)
    assert warm["cycles"] >= 4, "too few cycles to have a warm step in the middle"
    major, minor = 2, 3  # a step in the middle: the engine had two cycles to warm up
    run = warm["run"]
    repo = warm["repo"]
    pipetask = os.path.join(os.path.dirname(sys.executable), "pipetask")
    result = subprocess.run(
        [pipetask, "run", "-b", repo, "-i", run.collection, "-o", "alone", "--register-dataset-types",
         "-p", f"{run.pipeline_path}#cycle", "-c", f"parameters:major_cycle=c{major}",
         "-c", f"parameters:minor_cycle=c{minor}"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    compared = 0
    with Butler.from_config(repo) as butler:
        alone_run = butler.collections.get_info("alone").children[0]
        for ref in butler.registry.queryDatasets(..., collections=alone_run):
            dataset_type = ref.datasetType.name
            if dataset_type.endswith(("_config", "_log", "_metadata")) or dataset_type == "packages":
                continue
            cold = butler.get(ref)
            loop = butler.get(dataset_type, ref.dataId, collections=run.collection)
            if hasattr(cold, "pixels"):
                np.testing.assert_array_equal(cold.pixels, loop.pixels, err_msg=dataset_type)
            elif isinstance(cold, dict):
                assert cold == loop, dataset_type
            compared += 1
    # residual_c2, mask_c3, model_c3 and summary_c3 at least (and Taylor terms, mask state).
    assert compared >= 4
