"""The README's examples run as written.

Every ```sh block of README.md that runs ``radio-clean``, ``butler`` or
``pipetask`` runs here, in the README's order, each as one ``bash -e``
script, and so does the ```python block that reads the demo's image back.
Nothing in a command is changed. What differs from a user's shell, and why:

- The working directory, which the README's commands take to be the
  checkout, is a temporary directory holding a link ``pipelines`` to the
  checkout's ``pipelines/``: everything the examples write (``data/``,
  ``myrepo``, ``out``, ``sky.ms``, ``exported/``, ``looprepo``) goes there.
- ``source .venv/bin/activate`` is left out: the commands come from this
  interpreter's ``bin`` directory, put first on ``PATH``.

Not run: the ``make demo``/``make test`` block (they set up ``.venv`` and run
this suite), the block on ``/data/target.ms`` (a template for the user's own
MS) and the ```python block that reads a channel range of the NGC5921 cube
(no cube is imaged here). The test counts the blocks of each kind, so an
example added to the README is either run here or deliberately left out.
"""

import json
import os
import re
import subprocess
import sys

from astropy.io import fits

_CHECKOUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
_COMMANDS = re.compile(r"^(radio-clean|butler|pipetask) ", re.MULTILINE)


def _blocks(language):
    with open(os.path.join(_CHECKOUT, "README.md")) as stream:
        text = stream.read()
    return re.findall(rf"^```{language}\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)


def test_readme_examples_run_as_written(tmp_path):
    shell_blocks = [block for block in _blocks("sh") if _COMMANDS.search(block)]
    user_data = [block for block in shell_blocks if "/data/" in block]
    runnable = [block for block in shell_blocks if block not in user_data]
    assert [len(_blocks("sh")), len(shell_blocks), len(user_data)] == [8, 7, 1]
    python_blocks = _blocks("python")
    assert len(python_blocks) == 2 and "N5921" in python_blocks[1]

    os.symlink(os.path.abspath(os.path.join(_CHECKOUT, "pipelines")), tmp_path / "pipelines")
    environment = {name: value for name, value in os.environ.items() if name != "CASASITECONFIG"}
    environment["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), environment.get("PATH", "")])
    outputs = []
    for block in runnable:
        script = "\n".join(line for line in block.splitlines() if line != "source .venv/bin/activate")
        result = subprocess.run(
            ["bash", "-e", "-c", script], cwd=tmp_path, env=environment, capture_output=True, text=True
        )
        assert result.returncode == 0, f"{script}\n{result.stdout}\n{result.stderr}"
        outputs.append(result.stdout + result.stderr)
    python = subprocess.run(
        [sys.executable, "-c", python_blocks[0] + "\nprint(image.pixels.shape, image.restoring_beam)"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
    )
    assert python.returncode == 0, python.stderr

    image, simulate, export, queries, loop, by_hand = outputs
    # radio-clean image: 1000 iterations, stopped by the iteration limit, into the collection named.
    assert "iteration limit after 1000 iterations" in image and "collection images/demo" in image
    with open(tmp_path / "out" / "summary.json") as stream:
        summary = json.load(stream)
    assert summary["iterdone"] == 1000 and summary["stopcode"] == 1
    # radio-clean simulate: VLA D's 27 antennas, the two sources, their truth.
    assert "27 antennas (vla.d)" in simulate and "2 sources, 1.5 Jy in all" in simulate
    assert (tmp_path / "sky.ms" / "table.dat").exists() and (tmp_path / "sky.cl" / "table.dat").exists()
    # radio-clean export wrote the same image again.
    assert "exported/" in export
    exported, written = (fits.getdata(tmp_path / name / "image.fits") for name in ("exported", "out"))
    assert (exported == written).all()
    # The butler queries list the run's collection, its image and its residuals.
    assert "images/demo/finish" in queries and "residual_c0" in queries and "residual_c1" in queries
    # radio-clean clean stopped at nmajor=2, as tclean does.
    assert "reached nmajor (stop code 9)" in loop and "images/run1" in loop
    # The steps by hand: start and cycle step 1 ran their quanta.
    executed = re.findall(r"Executed (\d+) quanta successfully, 0 failed and 0 remain", by_hand)
    assert executed == ["4", "3"]
    assert python.stdout.split(")")[0] == "(1, 1, 256, 256"
