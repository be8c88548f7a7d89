"""The engine fingerprint covers exactly the modules that decide a build's bytes, those of
the shared package (rmod_dose_common) that a render imports included."""

from __future__ import annotations

import json
import subprocess
import sys

from rmod.build.fingerprint import NOT_RENDERING_MODULES, RENDERING_MODULES, engine_fingerprint

SCRIPT = """
import json, sys, tempfile
from pathlib import Path
from rmod.library.catalog import Library
from rmod.recipe.spec import load_recipe
from rmod.build.shards import Shard
from rmod.example.sample_store import SampleStore
from rmod.build.worker import ShardTask, build_example, engine_fingerprint
lib = Library.load(sys.argv[1])
recipe = load_recipe(None)
task = ShardTask("unused", Shard("train", 0, 0, 1), recipe, sys.argv[1], lib.fingerprint, 0,
                 "wav", engine_fingerprint())
store = SampleStore(lib, 44100, folder=sys.argv[2])
build_example(task, store, 0, Path(tempfile.mkdtemp(dir=sys.argv[2])))
ours = ("rmod", "rmod_dose_common")
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ours)))
"""


def test_every_module_a_render_imports_is_covered_or_named(small_library, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(small_library.path), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    imported = json.loads(proc.stdout.strip().splitlines()[-1])
    unaccounted = set(imported) - set(RENDERING_MODULES) - set(NOT_RENDERING_MODULES)
    assert not unaccounted, (
        f"add these to RENDERING_MODULES or NOT_RENDERING_MODULES: {unaccounted}"
    )
    assert set(RENDERING_MODULES) <= set(imported)  # no stale names either
    shared = {m for m in imported if m.startswith("rmod_dose_common.")}
    assert {"rmod_dose_common.records", "rmod_dose_common.fileio"} <= shared  # checked above


def test_fingerprint_is_stable_and_hex():
    fp = engine_fingerprint()
    assert len(fp) == 64 and int(fp, 16) >= 0 and engine_fingerprint() == fp
