"""Every record name is spelled through bench.schema: the columns of layers.csv and grads.csv,
the keys of summary.json's `energy` object and the attribute names bench keeps in a sweep's
Optuna study. The package's source is parsed (ast) and a string literal equal to one of those
names is a failure, so a rename in schema.py cannot miss a reader.

Words like `levels`, `group` or `index` also mean other things (a study, a table heading, a
config key), so those are checked where the records are read (the report and the sweep's study
code); the names only records use are checked in the whole package. A literal that means
something else is allowed as a module constant (`LEVELS_STUDY = "levels"`), which names its
meaning: only the constant's own assignment may spell it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bench import schema

PACKAGE = Path(schema.__file__).resolve().parent
ROOT = PACKAGE.parent
# `description` is the sweep file's own key (the study attribute takes its name) and `layer` a
# block name's prefix too (bench.report.plots.block_order): neither can be told apart by text
ALL_NAMES = (set(schema.LAYER_COLUMNS) | set(schema.GRAD_COLUMNS) | {schema.TOTAL_GROUP}
             | set(schema.ENERGY_KEYS) | set(schema.TRIAL_ATTRS) | set(schema.STUDY_ATTRS)) \
    - {schema.DESCRIPTION_ATTR, schema.ENERGY_LAYER}
# plain words: their other meanings are checked only in the modules that read the records
WORDS = {schema.SPLIT, schema.EPOCH, schema.PROBE, schema.KIND, schema.INDEX, schema.LEVELS,
         schema.NEURONS, schema.RATE, schema.STEP, schema.GROUP, schema.TOTAL_GROUP,
         schema.ENERGY_IMAGES, schema.ENERGY_LAYER_UJ,
         schema.ENERGY_MEASURED, schema.RUN_ID, schema.ERROR, schema.TRACEBACK,
         schema.PROGRESS}
READERS = ("report/*.py", "sweep/queue.py", "sweep/status.py", "sweep/attrs.py",
           "sweep/storage.py", "sweep/__init__.py")


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def _named_constants(tree: ast.Module) -> set[int]:
    """Literals that are the whole value of a module-level UPPER_CASE constant."""
    out = set()
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Constant):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if all(isinstance(t, ast.Name) and t.id.isupper() for t in targets):
                out.add(id(node.value))
    return out


def stray_literals(source: str, where: str, names: set[str]) -> list[str]:
    """`where:line: 'name'` for each string literal of the source that spells one of the names
    (or a `bench:` attribute)."""
    tree = ast.parse(source, filename=where)
    allowed = _docstrings(tree) | _named_constants(tree)
    return [f"{where}:{node.lineno}: {node.value!r}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in allowed
            and (node.value in names or node.value.startswith("bench:"))]


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "schema.py")


def test_the_checked_names_are_schemas():
    # the lists the test reads are the record's own: a typo there would check nothing
    assert {"spikes_per_image", "max_spike", "grad_norm", "group", "total"} <= ALL_NAMES
    assert {"total_uj_per_image", "breakdown_uj_per_image", "per_layer"} <= ALL_NAMES
    assert {"slot", "run_dir", "progress", "bench:spec", "bench:best_configuration"} <= ALL_NAMES
    assert WORDS <= ALL_NAMES


def test_no_record_name_is_spelled_outside_schema():
    readers = {p for pattern in READERS for p in PACKAGE.glob(pattern)}
    assert len(readers) >= 12  # the patterns still match the report and the sweep's study code
    stray = [hit for path in _modules()
             for hit in stray_literals(path.read_text(encoding="utf-8"),
                                       str(path.relative_to(ROOT)),
                                       ALL_NAMES if path in readers else ALL_NAMES - WORDS)]
    assert not stray, "spell these through bench.schema:\n" + "\n".join(stray)


@pytest.mark.parametrize("source, hits", [
    ('x = df["grad_norm"]\n', ["'grad_norm'"]),
    ('def f():\n    """levels"""\n    return {"bench:spec": 1}\n', ["'bench:spec'"]),
    ('LEVELS_STUDY = "levels"\ny = ctx["levels"]\n', ["'levels'"]),
    ('y = f"{a}_mean"\nz = ("rate", "mean")\n', ["'rate'"]),
])
def test_the_check_finds_literals(source, hits):
    assert [h.split(": ", 1)[1] for h in stray_literals(source, "m.py", ALL_NAMES)] == hits
