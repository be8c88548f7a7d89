"""`.ci/run` runs the README's test command, then lints, and each lint fails on what it is there to catch: an
unused import (ruff check), a badly laid out file (ruff format --check), an untyped
function in a strictly typed module (mypy, with pyproject.toml's config)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _tool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def _has(module: str) -> bool:
    return _tool(module, "--version", cwd=ROOT).returncode == 0


def test_ci_runs_the_readme_test_command_then_the_lints():
    last = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    steps = [step.strip() for step in last.split("&&")]
    assert steps == [
        "python3 -m venv .venv",
        ". .venv/bin/activate",
        "pip install torch==2.13.0",
        "pip install -e '.[test]'",
        "python -m pytest -q tests",
        "ruff check .",
        "ruff format --check .",
        "mypy",
    ]
    readme = (ROOT / "README.md").read_text()
    assert " && ".join(steps[:5]) in readme  # the README's test command, verbatim


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of the lint configuration and of one small module, to spoil."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "rmod_dose_common").mkdir()
    (tmp_path / "rmod_dose_common" / "__init__.py").write_text('"""Shared."""\n')
    return tmp_path


@pytest.mark.skipif(not _has("ruff"), reason="ruff is not installed (pip install -e '.[test]')")
def test_ruff_fails_on_an_unused_import_and_on_layout(project):
    module = project / "rmod_dose_common" / "__init__.py"
    assert _tool("ruff", "check", ".", cwd=project).returncode == 0
    module.write_text('"""Shared."""\n\nimport os\n')
    checked = _tool("ruff", "check", ".", cwd=project)
    assert checked.returncode == 1 and "F401" in checked.stdout
    module.write_text('"""Shared."""\n\nX = {"a":1}\n')
    assert _tool("ruff", "format", "--check", ".", cwd=project).returncode == 1


@pytest.mark.slow
@pytest.mark.skipif(not _has("mypy"), reason="mypy is not installed (pip install -e '.[test]')")
def test_mypy_fails_on_an_untyped_function_in_a_strict_module(project):
    module = project / "rmod_dose_common" / "__init__.py"
    module.write_text('"""Shared."""\n\n\ndef half(x: float) -> float:\n    return x / 2\n')
    args = ("mypy", "--no-incremental", "rmod_dose_common")
    assert _tool(*args, cwd=project).returncode == 0
    module.write_text('"""Shared."""\n\n\ndef half(x):\n    return x / 2\n')
    typed = _tool(*args, cwd=project)
    assert typed.returncode == 1 and "no-untyped-def" in typed.stdout, typed.stdout
