"""The docs build with warnings as errors, and their generated tables say what the code says."""

import html.parser
import subprocess
import sys
from pathlib import Path

from lsst.pex.config import ChoiceField

from radio_clean.parameters import MAX_TAYLOR_TERMS, CleanParametersConfig
from radio_clean.tasks.auto_mask import AutoMaskTask
from radio_clean.tasks.deconvolve import DeconvolveTask
from radio_clean.tasks.gather_residual import GatherResidualTask
from radio_clean.tasks.major_cycle import MajorCycleTask
from radio_clean.tasks.make_psf import MakePsfTask
from radio_clean.tasks.restore import RestoreTask

DOC = Path(__file__).resolve().parents[1] / "doc"
TASKS = (MakePsfTask, MajorCycleTask, AutoMaskTask, DeconvolveTask, RestoreTask, GatherResidualTask)


def sphinx_build(source: Path, output: Path) -> subprocess.CompletedProcess:
    """Build HTML as ``make docs`` does (``-W --keep-going``), doctrees outside the checkout.

    ``--no-color``: Sphinx colours its warnings when the environment asks for colour (``FORCE_COLOR``),
    whether or not stderr is a terminal.
    """
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "--no-color", "-b", "html"]
        + ["-d", str(output / "doctrees"), str(source), str(output / "html")],
        capture_output=True,
        text=True,
        timeout=300,
    )


class _Tables(html.parser.HTMLParser):
    """The text and the tables of an HTML page, tables as rows of cell texts (whitespace collapsed)."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def text_of(page: Path) -> str:
    """The text of an HTML page, whitespace collapsed."""
    parser = _Tables()
    parser.feed(page.read_text())
    return " ".join("".join(parser.text).split())


def tables_of(page: Path, first_header: str) -> list[list[str]]:
    """Rows (without header) of every table of the page whose first header cell is ``first_header``."""
    parser = _Tables()
    parser.feed(page.read_text())
    return [row for table in parser.tables if table[0][0] == first_header for row in table[1:]]


def check_parameters_page(page: Path) -> None:
    fields = CleanParametersConfig._fields
    rows = {row[0]: row for row in tables_of(page, "Parameter")}
    assert list(rows) == list(fields)
    assert f"{len(fields)} parameters, as CleanParametersConfig defines them" in text_of(page)
    for name, field in fields.items():
        _, dtype, default, allowed, meaning = rows[name]
        assert meaning == " ".join(field.doc.split()), name
        assert default == repr(list(field.default) if isinstance(field.default, list) else field.default)
        if isinstance(field, ChoiceField):
            assert all(repr(value) in allowed for value in field.allowed if value is not None), name
    assert rows["niter"][1:4] == ["int", "0", "niter >= 0"]
    assert rows["psfcutoff"][3] == "0.01 <= psfcutoff <= 0.99"
    assert rows["nterms"][3] == f"1 <= nterms <= {MAX_TAYLOR_TERMS}"
    assert rows["imsize"][1:4] == ["list[int]", "[100]", "1 to 2 items; imsize[i] > 0"]
    assert rows["cell"][3] == "at most 2 items; each item an angle with its unit"
    assert "'briggs' (Briggs (robust))" in rows["weighting"][3]
    assert rows["threshold"][3] == "a spectral flux density with its unit, or a number, or ''"


def check_task_page(page: Path, task: type) -> None:
    connections = task.ConfigClass.ConnectionsClass.allConnections
    rows = {row[0]: row for row in tables_of(page, "Connection")}
    assert {name: row[1:3] for name, row in rows.items()} == {
        name: [connection.name, connection.storageClass] for name, connection in connections.items()
    }, task.__name__
    fields = [row[0] for row in tables_of(page, "Field")]
    assert fields == list(task.ConfigClass._fields), task.__name__


def check_api_page(page: Path) -> None:
    text = page.read_text()
    for anchor in (
        'id="module-radio_clean.parameters"',
        'id="radio_clean.parameters.parse_parameter"',
        'id="radio_clean.tasks.deconvolve.DeconvolveTask"',
        'id="module-radio_clean.image"',
        # radio_clean.casa is `from ._engine import *` and the like: its API is what it re-exports.
        'id="radio_clean.casa.run_minor_cycle"',
        'id="radio_clean.casa.CasaError"',
    ):
        assert anchor in text
    assert "module-radio_clean._scratch" not in text
    # Connections classes carry their connection tables, not the metaclass's bookkeeping attributes.
    assert 'id="radio_clean.tasks.deconvolve.DeconvolveConnections.allConnections"' not in text
    assert "summary_{cycle}" in text_of(page)
    assert "module-radio_clean.casasiteconfig" not in text


def test_docs_build_with_warnings_as_errors_and_tables_say_what_the_code_says(tmp_path):
    # One build for all checks: under pytest-xdist a module fixture would build once per worker.
    result = sphinx_build(DOC, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    html_dir = tmp_path / "html"
    check_parameters_page(html_dir / "parameters.html")
    for task in TASKS:
        check_task_page(html_dir / "tasks" / f"{task.__name__}.html", task)
    rows = {row[0]: row for row in tables_of(html_dir / "tasks" / "DeconvolveTask.html", "Connection")}
    assert rows["summary"][1:5] == ["summary_{cycle}", "StructuredDataDict", "instrument, field, band", ""]
    assert rows["model_tt1"][4] == "not with the default config"
    assert rows["visibilities"][4] == "multiple"
    check_api_page(html_dir / "api.html")


def test_a_task_without_a_page_fails_the_build(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    (source / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(DOC / '_ext')!r})\n"
        'extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "radio_clean_docs"]\n'
    )
    (source / "index.rst").write_text(
        "Tasks\n=====\n\n.. toctree::\n\n   parameters\n   api\n\n"
        ".. task-topic:: radio_clean.tasks.make_psf.MakePsfTask\n   :heading: -\n"
    )
    (source / "parameters.rst").write_text("Parameters\n==========\n")
    (source / "api.rst").write_text("API\n===\n")
    result = sphinx_build(source, tmp_path / "build")
    assert result.returncode != 0
    warnings = sorted(line for line in result.stderr.splitlines() if "WARNING" in line)
    expected = [
        f"WARNING: radio_clean.tasks.{module}.{name} has no task page: add doc/tasks/{name}.rst with "
        f"'.. task-topic:: radio_clean.tasks.{module}.{name}' and list it in doc/index.rst."
        for module, name in sorted(
            (task.__module__.rpartition(".")[2], task.__name__) for task in TASKS if task is not MakePsfTask
        )
    ]
    assert warnings == expected
