"""The whole built-in library of every source combination this machine can make, checked.

Issue 20: the library's quality must not depend on which optional sources are installed. The
test suite renders the first loops of each melodic combination (tests/rmod/
test_soundfont_hardening.py); this script generates the WHOLE library of each combination
(soundfonts none / AVL / FluidR3 / MuseScore and mixes, espeak-ng on and off; about 1.5-2 min
each on 2 cores) and runs test_builtin's checks on it. Fonts this machine lacks can be added
with RMOD_TEST_SOUNDFONTS=FILE:FILE.

    python benchmarks/source_combinations.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tests.rmod.test_builtin as checks  # noqa: E402
from tests.rmod.test_soundfont_hardening import ALL_SOURCES, _id, _sources  # noqa: E402


def main() -> int:
    from rmod.library.builtin import builtin_manifest_path
    from rmod.library.catalog import Library

    failed = 0
    for name, fonts, espeak in ALL_SOURCES:
        label = f"{name} + espeak-ng" if espeak else f"{name} (no espeak-ng)"
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
            mp.setenv("RMOD_CACHE_DIR", tmp)
            _sources(mp, fonts, espeak)
            lib = Library.load(builtin_manifest_path(Path(tmp), jobs=2, progress=False))
            try:
                checks.test_builtin_counts_and_formats(lib)
                checks.test_builtin_oneshots_are_percussive(lib)
                checks.test_builtin_loops_are_sound_all_along(lib)
                verdict = "passes"
            except AssertionError as exc:
                failed += 1
                verdict = f"FAILS: {str(exc).splitlines()[0]}"
        print(f"{label:<40} {verdict} ({time.perf_counter() - start:.0f} s) [{_id(name)}]")
    print(f"source_combinations: {len(ALL_SOURCES) - failed} of {len(ALL_SOURCES)} pass")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
