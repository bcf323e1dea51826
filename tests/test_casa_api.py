"""The CASA API that radio_clean relies on (``radio_clean.casa._casa_private``) holds here."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "casa_api_matrix.py"
ITEMS = [
    "import casatools",
    "casatasks imagerhelpers",
    "tclean signature",
    "synthesis tool methods",
    "demo MS (importuvfits)",
    "ImagerParameters",
    "steps = tclean",
    "iterbotsink replay",
]


def _run(*arguments, **environment):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python"), **environment}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *arguments], capture_output=True, text=True, env=env, timeout=300
    )


def test_installed_casatools_passes_every_item(tmp_path):
    completed = _run("--workdir", str(tmp_path))
    lines = {
        line.split(": ", 1)[0]: line.split(": ", 1)[1]
        for line in completed.stdout.splitlines()
        if ": " in line and line.split(": ", 1)[0] in ITEMS
    }
    assert list(lines) == ITEMS, completed.stdout + completed.stderr
    assert all(result.startswith("ok") for result in lines.values()), completed.stdout
    # The steps give tclean's counts and bits, and the replay gives the controls each cycle was given.
    assert "iterdone 60, nmajordone 5, stopcode 1 as tclean's" in lines["steps = tclean"]
    assert "model 0.0e+00, residual 0.0e+00, image 0.0e+00" in lines["steps = tclean"]
    assert lines["iterbotsink replay"].startswith("ok (4 cycles")
    assert completed.stdout.splitlines()[-1] == f"{len(ITEMS)}/{len(ITEMS)} ok"
    assert completed.returncode == 0


def test_a_missing_casatasks_is_reported_per_item(tmp_path):
    # A casatasks that does not import: one line for it, the items that need it not checked, exit 1.
    shadow = tmp_path / "shadow" / "casatasks"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('casatasks withdrawn for this test')\n")
    (shadow / "private").mkdir()
    (shadow / "private" / "__init__.py").write_text("")
    completed = _run(
        "--workdir",
        str(tmp_path / "work"),
        PYTHONPATH=os.pathsep.join([str(tmp_path / "shadow"), str(ROOT / "python")]),
    )
    lines = completed.stdout.splitlines()
    assert lines[0].startswith("import casatools: ok")
    assert lines[1].startswith("casatasks imagerhelpers: BROKEN: ")
    assert lines[2].startswith("tclean signature: BROKEN: ImportError: casatasks withdrawn for this test")
    assert lines[3].startswith("synthesis tool methods: ok")
    assert "ImagerParameters: not checked (needs casatasks imagerhelpers, tclean signature)" in lines
    assert "iterbotsink replay: not checked (needs steps = tclean)" in lines
    assert lines[-1] == "3/8 ok"
    assert completed.returncode == 1
