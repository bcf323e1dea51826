"""Sphinx directives that write radio_clean's reference tables from the code at build time.

The tables cannot go stale: they are read from the classes the pipelines run.

``.. tclean-parameters::``
    Every field of `radio_clean.parameters.CleanParametersConfig` (tclean's
    parameters): type, default, allowed values and meaning, grouped by the
    section comments of the class body.
``.. task-topic:: radio_clean.tasks.module.SomeTask``
    The sections of a Rubin task topic: Python API summary, Butler datasets
    (every connection with its dataset type name template, storage class,
    dimensions and doc) and configuration fields.
``.. api-reference::``
    One ``automodule`` section per public module of radio_clean (any module
    whose dotted name has no part starting with ``_``, less those named in
    the ``radio_clean_api_exclude`` config value).

A `~lsst.pipe.base.PipelineTask` of ``radio_clean.tasks`` that no
``task-topic`` documents is reported as a warning, which fails a build with
``-W``.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import textwrap
from collections.abc import Iterator

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

logger = logging.getLogger(__name__)

PACKAGE = "radio_clean"
TASK_PACKAGE = "radio_clean.tasks"
PARAMETERS_CLASS = "radio_clean.parameters.CleanParametersConfig"

# Connection kinds in the order a task topic lists them, with their section titles.
CONNECTION_KINDS = (
    ("InitInput", "Init-input datasets"),
    ("PrerequisiteInput", "Prerequisite input datasets"),
    ("Input", "Input datasets"),
    ("InitOutput", "Init-output datasets"),
    ("Output", "Output datasets"),
)


def import_object(path: str) -> object:
    """Import ``package.module.Name``."""
    module_name, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module_name), name)


def literal(value: object) -> str:
    """An inline-literal rendering of a Python value (``''`` for the empty string)."""
    text = repr(value)
    return f"``{text}``" if text else ""


def one_line(text: str | None) -> str:
    """Collapse a doc string into one line of a table cell."""
    return " ".join((text or "").split())


def plain(text: str | None) -> str:
    """A plain-text doc (of a config field or connection) as one line of reST that shows it as written.

    Field and connection docs are plain text (``pipetask --show config``
    prints them), so ``'*:5~20'`` or ``'cube_'`` must not become markup.
    """
    return re.sub(r"([^A-Za-z0-9\s])", r"\\\1", one_line(text))


def list_table(header: list[str], rows: list[list[str]], widths: list[int]) -> list[str]:
    """Return the reST lines of a ``list-table``."""
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        f"   :widths: {' '.join(str(width) for width in widths)}",
        "",
    ]
    for row in [header, *rows]:
        for index, cell in enumerate(row):
            bullet = "*" if index == 0 else " "
            lines.append(f"   {bullet} - {cell}" if cell else f"   {bullet} -")
    lines.append("")
    return lines


def heading(title: str, underline: str) -> list[str]:
    """Return the reST lines of a section title."""
    return [title, underline * len(title), ""]


# --- pex_config fields -------------------------------------------------------------------------------


def field_calls(config_class: type) -> dict[str, ast.Call]:
    """The ``Field(...)`` call of every field assigned in the body of a Config class, by field name."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(config_class)))
    calls = {}
    for statement in tree.body[0].body:
        if (
            isinstance(statement, ast.Assign)
            and len(statement.targets) == 1
            and isinstance(statement.targets[0], ast.Name)
            and isinstance(statement.value, ast.Call)
        ):
            calls[statement.targets[0].id] = statement.value
    return calls


def field_sections(config_class: type) -> list[tuple[str, list[str]]]:
    """Group a Config class's fields under the comment lines (``# Weighting.``) that head them."""
    lines, _ = inspect.getsourcelines(config_class)
    tree = ast.parse(textwrap.dedent("".join(lines)))
    sections: list[tuple[str, list[str]]] = []
    title = ""
    previous_end = tree.body[0].body[0].lineno - 1 if tree.body[0].body else 0
    for statement in tree.body[0].body:
        comments = [
            line.strip().removeprefix("#").strip()
            for line in lines[previous_end : statement.lineno - 1]
            if line.strip().startswith("#")
        ]
        previous_end = statement.end_lineno
        if not (isinstance(statement, ast.Assign) and isinstance(statement.targets[0], ast.Name)):
            continue
        name = statement.targets[0].id
        if name not in config_class._fields:
            continue
        if comments:
            title = comments[0].rstrip(".")
        if not sections or sections[-1][0] != title:
            sections.append((title, []))
        sections[-1][1].append(name)
    return sections


_SIMPLE_NODES = (
    ast.Compare,
    ast.BoolOp,
    ast.UnaryOp,
    ast.BinOp,
    ast.Constant,
    ast.Tuple,
    ast.Name,
    ast.Load,
    ast.cmpop,
    ast.boolop,
    ast.unaryop,
    ast.operator,
)


class _Rename(ast.NodeTransformer):
    """Rename a variable in an expression (to a text that need not be an identifier), put in constants."""

    def __init__(self, old: str, new: str, constants: dict[str, object]) -> None:
        self.old, self.new, self.constants = old, new, constants

    def visit_Name(self, node: ast.Name) -> ast.expr:
        if node.id == self.old:
            return ast.Name(id=self.new, ctx=node.ctx)
        if node.id in self.constants:
            return ast.Constant(self.constants[node.id])
        return node


def check_text(check: ast.expr | None, subject: str, module: ast.Module, constants: dict[str, object]) -> str:
    """Render a field's ``check``/``itemCheck`` as a reader can take it, or '' if it cannot be put simply.

    A lambda made of comparisons becomes its expression with the argument
    named ``subject`` (``lambda x: 0 <= x <= 1`` -> ``0 <= pbmask <= 1``) and
    the module's numeric ``constants`` by their values; a module-level
    ``_quantity_check("angle", ...)`` becomes "an angle with its unit".
    """
    if isinstance(check, ast.Lambda) and len(check.args.args) == 1:
        argument = check.args.args[0].arg
        body = check.body
        if all(isinstance(node, _SIMPLE_NODES) for node in ast.walk(body)) and all(
            node.id == argument or node.id in constants
            for node in ast.walk(body)
            if isinstance(node, ast.Name)
        ):
            return f"``{ast.unparse(_Rename(argument, subject, constants).visit(body))}``"
        return ""
    if isinstance(check, ast.Call) and getattr(check.func, "id", "") == "_Range":
        return range_check_text(check, subject, constants)
    if isinstance(check, ast.Name):
        for statement in module.body:
            if (
                isinstance(statement, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == check.id for t in statement.targets)
                and isinstance(statement.value, ast.Call)
                and getattr(statement.value.func, "id", "") == "_quantity_check"
            ):
                return quantity_check_text(statement.value)
    return ""


def range_check_text(call: ast.Call, subject: str, constants: dict[str, object]) -> str:
    """Describe ``_Range(low, high, low_open=..., high_open=...)`` as a comparison (``0 < gain <= 1``)."""

    def value(node: ast.expr) -> object:
        if isinstance(node, ast.Name) and node.id in constants:
            return constants[node.id]
        return ast.literal_eval(node)

    arguments = [value(node) for node in call.args] + [None, None]
    low, high = arguments[0], arguments[1]
    keywords = {keyword.arg: value(keyword.value) for keyword in call.keywords}
    low = keywords.get("low", low)
    high = keywords.get("high", high)
    text = subject
    if low is not None:
        text = f"{low} {'<' if keywords.get('low_open') else '<='} {text}"
    if high is not None:
        text = f"{text} {'<' if keywords.get('high_open') else '<='} {high}"
    if low is None and high is None:
        return "a finite number"
    if high is None:  # one bound reads better with the subject first: niter >= 0
        text = f"{subject} {'>' if keywords.get('low_open') else '>='} {low}"
    return f"``{text}``"


def quantity_check_text(call: ast.Call) -> str:
    """Describe ``_quantity_check(kind, allow_empty=..., allow_number=...)``."""
    kind = ast.literal_eval(call.args[0])
    options = {keyword.arg: ast.literal_eval(keyword.value) for keyword in call.keywords}
    article = "an" if kind[0] in "aeiou" else "a"
    text = f"{article} {kind} with its unit"
    if options.get("allow_number", False):
        text += ", or a number"
    if options.get("allow_empty", True):
        text += ", or ``''``"
    return text


def allowed_text(
    field, call: ast.Call | None, name: str, module: ast.Module, constants: dict[str, object]
) -> str:
    """What values a pex_config field takes: its choices, list lengths and checks."""
    from lsst.pex.config import ChoiceField, ListField

    keywords = {keyword.arg: keyword.value for keyword in call.keywords} if call is not None else {}
    parts = []
    if isinstance(field, ChoiceField):
        choices = []
        for value, meaning in field.allowed.items():
            if value is None:
                continue  # an optional field's None, said once below
            # A meaning that only repeats the value ("natural": "natural", "... planes I") says nothing more.
            words = one_line(meaning).lower().split()
            if words and words != [str(value).lower()] and words[-1] != str(value).lower():
                choices.append(f"{literal(value)} ({plain(meaning)})")
            else:
                choices.append(literal(value))
        parts.append(", ".join(choices))
    if isinstance(field, ListField):
        if field.length is not None:
            parts.append(f"{field.length} items")
        elif field.minLength is not None and field.maxLength is not None:
            parts.append(f"{field.minLength} to {field.maxLength} items")
        elif field.maxLength is not None:
            parts.append(f"at most {field.maxLength} items")
        elif field.minLength is not None:
            parts.append(f"at least {field.minLength} items")
        item_check = check_text(keywords.get("itemCheck"), f"{name}[i]", module, constants)
        if item_check:
            parts.append(f"each item {item_check}" if item_check[0].islower() else item_check)
    field_check = check_text(keywords.get("check"), name, module, constants)
    if field_check:
        parts.append(field_check)
    if getattr(field, "optional", False):
        parts.append("or ``None``")
    return "; ".join(parts)


def type_text(field) -> str:
    """The type of a pex_config field: ``int``, ``list[str]``, the class of a ConfigField."""
    from lsst.pex.config import ConfigField, ListField

    if isinstance(field, ListField):
        return f"``list[{field.itemtype.__name__}]``"
    if isinstance(field, ConfigField):
        return f":py:class:`~{field.dtype.__module__}.{field.dtype.__qualname__}`"
    dtype = getattr(field, "dtype", None)
    return f"``{dtype.__name__}``" if isinstance(dtype, type) else ""


def default_text(field) -> str:
    """The default of a pex_config field as a literal (none for a ConfigField: its own fields say)."""
    from lsst.pex.config import ConfigField

    if isinstance(field, ConfigField):
        return ""
    default = field.default
    return literal(list(default) if isinstance(default, list | tuple) else default)


# --- tclean parameters ----------------------------------------------------------------------------------


class TcleanParametersDirective(SphinxDirective):
    """``.. tclean-parameters::``: the fields of CleanParametersConfig, one table per section."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        config_class = import_object(PARAMETERS_CLASS)
        self.env.note_dependency(inspect.getsourcefile(config_class))
        module = ast.parse(inspect.getsource(inspect.getmodule(config_class)))
        constants = {
            name: value
            for name, value in vars(inspect.getmodule(config_class)).items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }
        calls = field_calls(config_class)
        lines = [
            f"{len(config_class._fields)} parameters, as `~{PARAMETERS_CLASS}` defines them "
            "(generated from the code when these pages are built).",
            "",
        ]
        for title, names in field_sections(config_class):
            if title:
                lines += heading(title[0].upper() + title[1:], "-")
            rows = []
            for name in names:
                field = config_class._fields[name]
                rows.append(
                    [
                        f"``{name}``",
                        type_text(field),
                        default_text(field),
                        allowed_text(field, calls.get(name), name, module, constants),
                        plain(field.doc),
                    ]
                )
            lines += list_table(
                ["Parameter", "Type", "Default", "Allowed values", "Meaning"], rows, [14, 10, 14, 26, 36]
            )
        return parse_rst(self, lines)


def note_sources(env, *module_names: str) -> None:
    """Rebuild the page when the source of any of these modules (packages: with their modules) changes."""
    for name in module_names:
        module = importlib.import_module(name)
        env.note_dependency(inspect.getsourcefile(module))
        for info in pkgutil.walk_packages(getattr(module, "__path__", []), f"{name}."):
            env.note_dependency(inspect.getsourcefile(importlib.import_module(info.name)))


def parse_rst(directive: SphinxDirective, lines: list[str]) -> list[nodes.Node]:
    """Parse generated reST (section titles included) in the directive's place."""
    container = nodes.section()
    container.document = directive.state.document
    source = directive.get_source_info()[0]
    content = StringList(lines, source=f"{source} <generated by {directive.name}>")
    nested_parse_with_titles(directive.state, content, container)
    return container.children


# --- task topics ------------------------------------------------------------------------------------


def connection_rows(connections_class: type, kind: str, config=None) -> list[list[str]]:
    """Table rows of the connections of one kind (Input, Output...) of a Connections class.

    With a ``config``, connections it drops (Taylor terms, mosaic weights...)
    are marked "not with the default config".
    """
    import lsst.pipe.base.connectionTypes as cT

    connection_type = getattr(cT, kind)
    kept = connections_class(config=config).allConnections if config is not None else None
    rows = []
    for name, connection in connections_class.allConnections.items():
        if type(connection) is not connection_type:
            continue
        notes = [] if kept is None or name in kept else ["not with the default config"]
        if getattr(connection, "multiple", False):
            notes.append("multiple")
        if getattr(connection, "deferLoad", False):
            notes.append("deferred load")
        if getattr(connection, "minimum", 1) != 1:
            notes.append(f"minimum {connection.minimum}")
        if getattr(connection, "isCalibration", False):
            notes.append("calibration")
        dimensions = getattr(connection, "dimensions", None)
        rows.append(
            [
                f"``{name}``",
                f"``{connection.name}``",
                f"``{connection.storageClass}``",
                ", ".join(dimensions) if dimensions else "(none)",
                ", ".join(notes),
                plain(connection.doc),
            ]
        )
    return rows


def config_field_rows(config_class: type) -> list[list[str]]:
    """Table rows (field, type, default, doc) of the fields of a task's Config class."""
    rows = []
    for name, field in config_class._fields.items():
        if name == "connections":
            doc = "Dataset type names of the connections and the templates (see Butler datasets)."
        else:
            doc = plain(field.doc)
            if field.dtype is import_object(PARAMETERS_CLASS):
                doc += " See :doc:`/parameters`."
        rows.append([f"``{name}``", type_text(field), default_text(field), doc])
    return rows


def pipeline_labels(task_class: type) -> list[tuple[str, str]]:
    """(pipeline file, label) of every label that runs the task in the shipped pipelines."""
    import yaml

    from radio_clean.pipeline import shipped_pipelines

    path = f"{task_class.__module__}.{task_class.__qualname__}"
    labels = []
    for file_name, text in sorted(shipped_pipelines().items()):
        for label, task in yaml.safe_load(text)["tasks"].items():
            if task["class"] == path:
                labels.append((file_name, label))
    return labels


class TaskTopicDirective(SphinxDirective):
    """``.. task-topic:: radio_clean.tasks.module.SomeTask``: API summary, datasets, config fields."""

    required_arguments = 1
    has_content = False
    option_spec = {"heading": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        path = self.arguments[0]
        task_class = import_object(path)
        # The connections and configs are built from radio_clean.tasks.connections and the parameters.
        note_sources(self.env, TASK_PACKAGE, "radio_clean.parameters", "radio_clean.pipeline")
        self.env.radio_clean_task_topics = getattr(self.env, "radio_clean_task_topics", {})
        self.env.radio_clean_task_topics[path] = self.env.docname
        config_class = task_class.ConfigClass
        connections_class = config_class.ConnectionsClass
        level = self.options.get("heading", "=")
        lines = heading("Python API summary", level)
        lines += [
            ".. code-block:: py",
            "",
            f"   from {task_class.__module__} import {task_class.__name__}",
            "",
            f".. autoclass:: {path}",
            "   :no-index:",
            "   :members: run",
            "",
            f"Full reference: `{path}`, `{config_class.__module__}.{config_class.__qualname__}`, "
            f"`{connections_class.__module__}.{connections_class.__qualname__}` (:doc:`/api`).",
            "",
        ]
        lines += heading("Butler datasets", level)
        lines.append(
            f"Quantum dimensions: {', '.join(sorted(connections_class.dimensions)) or '(none)'}. "
            "Names in braces are connection templates, set with ``connections.NAME`` in the config."
        )
        lines.append("")
        labels = pipeline_labels(task_class)
        if labels:
            lines += [
                "Labels in the pipelines: "
                + ", ".join(f"``{label}`` (``{file}``)" for file, label in labels)
                + ".",
                "",
            ]
        if connections_class.defaultTemplates:
            lines += list_table(
                ["Template", "Default"],
                [
                    [f"``{name}``", literal(value)]
                    for name, value in connections_class.defaultTemplates.items()
                ],
                [30, 70],
            )
        lines += connection_tables(connections_class, config_class(), "-" if level == "=" else "^")
        lines += heading("Configuration fields", level)
        lines += list_table(
            ["Field", "Type", "Default", "Description"], config_field_rows(config_class), [20, 20, 15, 45]
        )
        return parse_rst(self, lines)


def pipeline_tasks() -> Iterator[str]:
    """Dotted paths of the PipelineTasks defined in the modules of radio_clean.tasks."""
    from lsst.pipe.base import PipelineTask

    package = importlib.import_module(TASK_PACKAGE)
    for info in pkgutil.iter_modules(package.__path__, f"{TASK_PACKAGE}."):
        if info.name.rpartition(".")[2].startswith("_"):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, PipelineTask)
                and value.__module__ == module.__name__
            ):
                yield f"{module.__name__}.{name}"


def check_task_topics(app, env) -> None:
    """Warn about every PipelineTask that has no task-topic page."""
    documented = getattr(env, "radio_clean_task_topics", {})
    for path in pipeline_tasks():
        if path not in documented:
            logger.warning(
                "%s has no task page: add doc/tasks/%s.rst with '.. task-topic:: %s' and list it in "
                "doc/index.rst.",
                path,
                path.rpartition(".")[2],
                path,
            )


def purge_task_topics(app, env, docname) -> None:
    """Forget the task topics of a document that is read again."""
    topics = getattr(env, "radio_clean_task_topics", {})
    for path in [path for path, name in topics.items() if name == docname]:
        del topics[path]


def merge_task_topics(app, env, docnames, other) -> None:
    """Gather the task topics found by parallel readers."""
    env.radio_clean_task_topics = getattr(env, "radio_clean_task_topics", {})
    env.radio_clean_task_topics.update(getattr(other, "radio_clean_task_topics", {}))


# --- API reference ----------------------------------------------------------------------------------------


def public_modules(excluded: list[str]) -> list[str]:
    """Dotted names of radio_clean's public modules (no part starting with ``_``), sorted."""
    package = importlib.import_module(PACKAGE)
    names = []
    for info in pkgutil.walk_packages(package.__path__, f"{PACKAGE}."):
        if any(part.startswith("_") for part in info.name.split(".")) or info.name in excluded:
            continue
        names.append(info.name)
    return sorted(names)


def reexported_members(module_name: str) -> str:
    """`` name, name...`` of what a module without ``__all__`` takes from its private submodules.

    ``radio_clean.casa`` is made of ``from ._engine import *`` and the like;
    autodoc would document none of it. Empty for any other module (autodoc's
    own choice: ``__all__``, or what the module defines).
    """
    module = importlib.import_module(module_name)
    if hasattr(module, "__all__"):
        return ""
    names = [
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith(f"{module_name}._")
    ]
    return f" {', '.join(sorted(names))}" if names else ""


class ApiReferenceDirective(SphinxDirective):
    """``.. api-reference::``: automodule of every public module."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        lines = []
        for name in public_modules(self.config.radio_clean_api_exclude):
            self.env.note_dependency(inspect.getsourcefile(importlib.import_module(name)))
            lines += heading(name, "=")
            lines += [
                f".. automodule:: {name}",
                f"   :members:{reexported_members(name)}",
                "   :show-inheritance:",
                "",
            ]
        return parse_rst(self, lines)


def connection_tables(connections_class: type, config=None, level: str = "-") -> list[str]:
    """The reST of the connection tables of a Connections class, one per kind."""
    lines = []
    for kind, title in CONNECTION_KINDS:
        rows = connection_rows(connections_class, kind, config)
        if rows:
            lines += heading(title, level) if level else [f".. rubric:: {title}", ""]
            lines += list_table(
                ["Connection", "Dataset type", "Storage class", "Dimensions", "Notes", "Description"],
                rows,
                [14, 16, 12, 16, 8, 34],
            )
    return lines


def _connections_class_attributes() -> frozenset[str]:
    """Attributes the connections metaclass gives every Connections class (inputs, dimensions...)."""
    from lsst.pipe.base import PipelineTaskConnections

    class Empty(PipelineTaskConnections, dimensions=()):
        pass

    return frozenset(name for name in vars(Empty) if not name.startswith("_"))


def skip_generated_members(app, what, name, obj, skip, options):
    """Leave out of autodoc what the appended tables say better: pex_config fields, connection bookkeeping."""
    from lsst.pex.config import Field

    if isinstance(obj, Field) or (what == "class" and name in _connections_class_attributes()):
        return True
    return None


def add_generated_tables(app, what, name, obj, options, lines) -> None:
    """Append the table of its fields to a Config class's docstring, of its connections to a Connections'."""
    from lsst.pex.config import Config
    from lsst.pipe.base import PipelineTaskConnections

    if what != "class" or not inspect.isclass(obj):
        return
    if issubclass(obj, PipelineTaskConnections):
        lines += ["", *connection_tables(obj, level="")]
    elif issubclass(obj, Config) and obj._fields:
        lines += ["", ".. rubric:: Configuration fields", ""]
        if f"{obj.__module__}.{obj.__qualname__}" == PARAMETERS_CLASS:
            lines += ["tclean's parameters: :doc:`/parameters`.", ""]
        else:
            rows = config_field_rows(obj)
            lines += list_table(["Field", "Type", "Default", "Description"], rows, [20, 20, 15, 45])


def setup(app):
    """Register the directives and the checks with Sphinx."""
    app.add_config_value("radio_clean_api_exclude", [], "env")
    app.add_directive("tclean-parameters", TcleanParametersDirective)
    app.add_directive("task-topic", TaskTopicDirective)
    app.add_directive("api-reference", ApiReferenceDirective)
    app.connect("env-check-consistency", check_task_topics)
    app.connect("env-purge-doc", purge_task_topics)
    app.connect("env-merge-info", merge_task_topics)
    app.connect("autodoc-skip-member", skip_generated_members)
    app.connect("autodoc-process-docstring", add_generated_tables)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
