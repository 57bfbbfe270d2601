"""The README's Python blocks run as written (a user copies them first)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

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
