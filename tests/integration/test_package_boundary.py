"""`rmod` and `dose_model` meet only at the documented manifest format (docs/ARCHITECTURE.md):
no module of one imports the other. The shared package both use (`rmod_dose_common`: the
command-line runner, durable writes, the record converter) imports neither."""

import ast
import importlib
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    "package,forbidden",
    [
        ("dose_model", "rmod"),
        ("rmod", "dose_model"),
        ("rmod_dose_common", "rmod"),
        ("rmod_dose_common", "dose_model"),
    ],
)
def test_packages_never_import_each_other(package, forbidden):
    root = Path(importlib.import_module(package).__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            offenders += [
                f"{path.name}:{node.lineno} {n}" for n in names if n.split(".")[0] == forbidden
            ]
    assert len(list(root.rglob("*.py"))) >= (1 if package == "rmod_dose_common" else 10)
    assert offenders == []
