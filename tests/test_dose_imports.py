"""`dose_model` reads what `rmod` writes through the manifest format, never through `rmod`
internals (docs/ARCHITECTURE.md): no module of it imports `rmod`."""

import ast
from pathlib import Path

import dose_model


def test_dose_model_never_imports_rmod():
    root = Path(dose_model.__file__).parent
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
                f"{path.name}:{node.lineno} {n}" for n in names if n.split(".")[0] == "rmod"
            ]
    assert len(list(root.rglob("*.py"))) > 10
    assert offenders == []
