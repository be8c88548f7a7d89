"""What the fuzz test found, pinned: each case failed (exit 3, a traceback) before its fix."""

from __future__ import annotations

import json

import pytest

from dose_model.dataset.audio import RowAudioError, load_mono
from dose_model.dataset.manifest import ManifestError, read_rows
from rmod.build.manifest import ManifestError as RmodManifestError
from rmod.build.manifest import read_build_info, read_manifest

DEEP = "[" * 100_000 + "]" * 100_000  # nested deeper than the JSON decoder's recursion limit


def test_a_manifest_line_nested_too_deep_is_a_one_line_error(tmp_path):
    """json.loads raises RecursionError (not a ValueError) on it: dose-manifest #119 and
    rmod-verify #0 exited 3."""
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "train.jsonl").write_text(DEEP + "\n")
    with pytest.raises(ManifestError, match=r"train.jsonl:1: invalid JSON \(maximum recursion"):
        read_rows(manifests / "train.jsonl")
    with pytest.raises(RmodManifestError, match=r"train.jsonl:1: maximum recursion depth"):
        read_manifest(manifests / "train.jsonl")
    (tmp_path / "build.json").write_text(DEEP)
    with pytest.raises(RmodManifestError, match=r"build.json: maximum recursion depth"):
        read_build_info(tmp_path)
    json.loads("[" * 100 + "]" * 100)  # ordinary nesting is untouched


def test_an_audio_path_holding_a_nul_byte_is_a_row_error(tmp_path):
    """os.stat raises ValueError on it: dose-manifest #43 (mixture = "\\x00") exited 3."""
    with pytest.raises(RowAudioError, match=r"not a file name \(it holds a NUL byte\)"):
        load_mono(tmp_path / "a\x00b.wav", 44100, 100)
