"""The plumbing both packages need lives once, in rmod_dose_common: this test fails when rmod
or dose_model grows its own copy again.

It reads every module of both packages (AST, no import) and looks for

* a function named like a shared one (the atomic writers, ``sha256_file``, the folder
  syncs, the record converter's entry points and walker);
* a call that only a copy would make: renames and ``fsync`` (atomic writes), ``mkstemp``,
  an incremental ``hashlib.sha256()`` or one over ``read_bytes()`` (a file hash), the type
  hints' walk (``typing.get_type_hints`` / ``get_origin``).

What is left of them outside rmod_dose_common is listed below with its reason; a listed
use that disappears must leave the list too, so the list stays true.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("rmod", "dose_model")

#: Names of functions that exist once, in rmod_dose_common.fileio and .records.
SHARED_FUNCTIONS = {
    "atomic_write", "atomic_writer", "atomic_write_bytes", "atomic_write_text",
    "sha256_file", "sync_folder", "sync_parent", "replace_durably", "current_umask",
    "to_plain", "from_plain", "check_plain", "plain_problem", "type_problem",
    "_convert", "_fits", "_scalar", "_sequence",
}  # fmt: skip
#: Calls that belong to the shared plumbing (``"hashlib.sha256()"``: with no argument,
#: an incremental hash; ``"hashlib.sha256(read_bytes)"``: a whole file read and hashed).
PLUMBING_CALLS = {
    "os.replace", "os.rename", "os.renames", "os.fsync", "os.fdatasync", "tempfile.mkstemp",
    "tempfile.NamedTemporaryFile", "hashlib.sha256()", "hashlib.sha256(read_bytes)",
    "typing.get_type_hints", "typing.get_origin", "typing.get_args",
}  # fmt: skip

#: (module path, name or call) -> why it is not a copy of the shared plumbing.
ALLOWED = {
    ("rmod/records.py", "from_plain"): "binds rmod's RecordError to the shared converter",
    ("rmod/build/run.py", "os.fsync"): (
        "the build lock's lease, written into the locked file itself (a file held open, "
        "not a file replaced)"
    ),
    ("rmod/build/fingerprint.py", "hashlib.sha256()"): (
        "hashes module sources and package versions into one engine fingerprint"
    ),
    ("rmod/library/catalog.py", "hashlib.sha256()"): (
        "the library fingerprint: the bytes after the header line, hashed as the lines stream"
    ),
    ("rmod/library/builtin/fonts.py", "hashlib.sha256()"): (
        "hashes a soundfont through rmod.limits.open_regular (a path from RMOD_SOUNDFONTS may "
        "be a FIFO or a device)"
    ),
    ("rmod/inspect/verify.py", "hashlib.sha256()"): (
        "hashes several manifest parts, gzipped or not, as one stream"
    ),
    ("rmod/build/tar_layout.py", "hashlib.sha256()"): (
        "the whole tar's SHA-256 for its index, hashed as the members stream in (no re-read)"
    ),
    ("rmod/inspect/tar_check.py", "hashlib.sha256()"): (
        "hashes a tar in the one pass that checks its headers and padding"
    ),
    ("dose_model/cache/index.py", "hashlib.sha256()"): (
        "the quick hash: only the first and last bytes of a file"
    ),
    ("rmod/example/sample_store.py", "os.rename"): (
        "publishes a cache entry relative to the store's descriptor (dir_fd), under its lock; "
        "the store is rebuilt every run, so it needs no durability"
    ),
    ("rmod/library/indexing.py", "tempfile.NamedTemporaryFile"): (
        "a probe that the manifest's folder is writable, made and removed before the work"
    ),
    ("rmod/library/builtin/__init__.py", "os.replace"): (
        "swaps the generated built-in library folder in (a cache, checked on every load and "
        "regenerated when the check fails)"
    ),
}


def _dotted(func: ast.expr) -> str | None:
    """``os.replace`` for a call of ``os.replace``; None for other shapes."""
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return f"{func.value.id}.{func.attr}"
    return None


def _reads_a_file(arg: ast.expr) -> bool:
    return any(
        isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr == "read_bytes"
        for n in ast.walk(arg)
    )


def plumbing_in(source: str) -> list[tuple[str, int]]:
    """``(name or call, line)`` of each piece of shared plumbing that ``source`` defines or
    calls itself (see the module docstring)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if node.name in SHARED_FUNCTIONS:
                found.append((node.name, node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.module in ("os", "tempfile", "typing"):
            found += [
                (f"{node.module}.{a.name}", node.lineno)
                for a in node.names
                if f"{node.module}.{a.name}" in PLUMBING_CALLS
            ]
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name == "hashlib.sha256":
                if not node.args:
                    name = "hashlib.sha256()"
                elif _reads_a_file(node.args[0]):
                    name = "hashlib.sha256(read_bytes)"
            if name in PLUMBING_CALLS:
                found.append((name, node.lineno))
    return found


def _scan() -> dict[tuple[str, str], list[int]]:
    out: dict[tuple[str, str], list[int]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for what, line in plumbing_in(path.read_text(encoding="utf-8")):
                out.setdefault((rel, what), []).append(line)
    return out


def test_neither_package_has_its_own_copy_of_the_shared_plumbing():
    found = _scan()
    copies = [f"{path}:{lines[0]} {what}" for (path, what), lines in found.items()
              if (path, what) not in ALLOWED]  # fmt: skip
    assert copies == [], (
        "use rmod_dose_common.fileio / .records instead, or add the use to ALLOWED with "
        f"its reason: {copies}"
    )
    stale = sorted(set(ALLOWED) - set(found))
    assert stale == [], f"ALLOWED lists uses that are gone: {stale}"


@pytest.mark.parametrize(
    "source,what",
    [
        ("def sha256_file(p):\n    pass\n", "sha256_file"),
        ("import os\nos.replace('a', 'b')\n", "os.replace"),
        ("from os import fsync\n", "os.fsync"),
        ("import hashlib\nh = hashlib.sha256()\n", "hashlib.sha256()"),
        ("import hashlib\nhashlib.sha256(p.read_bytes())\n", "hashlib.sha256(read_bytes)"),
        ("import typing\ntyping.get_type_hints(C)\n", "typing.get_type_hints"),
        ("def _convert(tp, value):\n    pass\n", "_convert"),
    ],
)
def test_the_scan_finds_a_copy(source, what):
    assert [w for w, _ in plumbing_in(source)] == [what]


def test_the_scan_lets_plain_hashing_of_bytes_pass():
    assert plumbing_in("import hashlib\nhashlib.sha256(data).hexdigest()\n") == []


def test_the_shared_package_holds_what_the_scan_looks_for():
    from rmod_dose_common import fileio, records

    shared = {n for n in SHARED_FUNCTIONS if hasattr(fileio, n) or hasattr(records, n)}
    assert shared == SHARED_FUNCTIONS - {"_fits"}  # _fits: dose_model's old walker's name
