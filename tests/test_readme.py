"""The README's Python blocks run as written (a user copies them first), and its run-record
section documents exactly the files and fields of bench.schema."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench import schema

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"),
                    flags=re.S | re.M)


def test_readme_has_the_python_api_block():
    api = [b for b in BLOCKS if "MultiLevelIF" in b]
    assert len(api) == 1 and "functional.reset_net(sn)" in api[0]


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, tmp_path):
    # a fresh interpreter in an empty folder: nothing defined beforehand, no state shared
    run = subprocess.run([sys.executable, "-c", BLOCKS[index]], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    if "MultiLevelIF" in BLOCKS[index]:
        assert run.stdout.startswith("torch.Size([4, 10]) 28 ")  # [B, classes], probe points


def test_method_doc_is_linked_and_names_only_files_of_the_repository():
    root = README.parent
    method = root / "docs" / "method.md"
    assert "](docs/method.md)" in README.read_text(encoding="utf-8")
    text = method.read_text(encoding="utf-8")
    # every file the page names, as a relative link or as `a/path.ext`, is in the repository
    links = re.findall(r"\]\((?!https?://)([^)#]+)", text)
    paths = re.findall(r"`([\w./-]+/[\w.-]+\.(?:py|md|yaml))`", text)
    assert paths, "the page names the code it describes"
    missing = [p for p in links if not (method.parent / p).exists()]
    missing += [p for p in paths if not (root / p).exists()]
    assert missing == []
    assert "paper.md" not in text and "shared/" not in text


def test_method_doc_python_blocks_run(tmp_path):
    text = (README.parent / "docs" / "method.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    assert blocks
    for block in blocks:
        run = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True,
                             text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]


def run_record_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## The run record\n")
    return text[start:text.index("\n## ", start)]


def test_readme_run_record_tables_are_the_schema():
    # equal tables, in order: every field bench reads or writes is documented, and nothing else
    tables = re.findall(r"(?:^\|.*\n)+", run_record_section(), flags=re.M)
    expected = [(schema.PROVENANCE_FIELDS, "field"), (schema.METRICS_FIELDS, "column"),
                (schema.LAYERS_FIELDS, "column"), (schema.GRADS_FIELDS, "column"),
                (schema.SUMMARY_FIELDS, "field"), (schema.EVAL_FIELDS, "field")]
    assert tables == [schema.markdown_table(fields, what) + "\n" for fields, what in expected]


def test_readme_run_record_names_every_file():
    section = run_record_section()
    named = set(re.findall(r"`([\w.]+\.(?:json|csv|ckpt))`", section))
    assert named == {*schema.RECORD_FILES, schema.LAST_CKPT, schema.BEST_CKPT}
    assert f"`{schema.EVALS_DIR}/<eval_id>/`" in section
    assert f"`results/<study>/{schema.RUNS_DIR}/<run_id>/`" in section
