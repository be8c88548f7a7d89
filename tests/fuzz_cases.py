"""Seeded generators of hostile inputs, one *campaign* per surface, for tests/integration/
test_fuzz.py (a short budget) and benchmarks/fuzz.py (a long one).

A campaign builds its world once (:meth:`Campaign.setup`: valid files to start from), then
makes case ``i`` from ``random.Random(i)`` (:meth:`Campaign.case`): it writes the input file(s)
and returns the argument list for its target, which `tests.fuzzing.Runner` runs in a child
under limits. The mutations are the ones issue 20 asked for:

- ``audio`` (the bounded reader through rmod's and dose_model's wrappers) and ``dose-extract``,
  ``dose-tokenize`` (the tools): WAV files built field by field (rate, channels, bits, format
  tag, data size that lies, truncation, flipped bytes) and FLAC files whose STREAMINFO is
  patched (rate, channels, bits, total samples) or whose bytes are cut or flipped;
- ``dose-manifest`` (dose_model's manifest reader, then each row's audio) and ``rmod-verify``:
  manifest rows with one leaf replaced, removed, added or scaled, or a line of junk;
- ``render-one``: ``rmod-render-one --from example.json`` with one leaf of the file changed.
"""

from __future__ import annotations

import copy
import json
import os
import random
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tests.hostile_audio import flac_bytes, patch_flac, wav_bytes

# ------------------------------------------------------------------------------ values
RATES = [0, 1, 7999, 8000, 11025, 44100, 384000, 384001, 2**20 - 1, 2**31 - 1, 2**32 - 1]
CHANNELS = [0, 1, 2, 3, 8, 64, 65, 255, 1024, 65535]
BITS = [0, 1, 8, 12, 16, 24, 32, 48, 64, 65535]
FORMAT_TAGS = [0, 1, 2, 3, 6, 7, 0x55, 0xFFFE, 0xFFFF]
SIZES = [0, 1, 3, 2**31 - 1, 2**31, 2**32 - 1]
HOSTILE: list[Any] = [
    None, True, False, 0, -1, 1, 2**31, 2**63, -(2**63), 10**400, 1e308, -1e308, 5e-324, 0.5,
    float("nan"), float("inf"), float("-inf"), "", "x" * 5000, "/dev/zero", "/etc/passwd",
    "../../../etc/passwd", "a/../../b", "\u0000", "train/fifo.wav", "train/link.wav",
    "train/hostile.wav", [], {}, [None], {"": None}, [[[[[]]]]], ["x"] * 1000,
]  # fmt: skip
JUNK_LINES = [
    "[]", "null", "1", '"x"', "{", "{}", "\x00", "\ufeff{}", "[" * 100_000 + "]" * 100_000,
    '{"id": ' + "9" * 5000 + "}", "{" + ", ".join(f'"k{i}": {i}' for i in range(10_000)) + "}",
]  # fmt: skip


def hostile_value(rng: random.Random, old: Any) -> tuple[str, Any]:
    """A replacement for a JSON leaf ``old``: a value from `HOSTILE`, or a number scaled."""
    if isinstance(old, (int, float)) and not isinstance(old, bool) and rng.random() < 0.3:
        factor = rng.choice([0, -1, 10, 1e6, 1e300, 2**40])
        return f"x{factor:g}", old * factor
    value = rng.choice(HOSTILE)
    return repr(value)[:40], value


def _paths(doc: Any, at: tuple = ()) -> Iterator[tuple]:
    yield at
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _paths(value, (*at, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc[:20]):
            yield from _paths(value, (*at, i))


def mutate_json(doc: Any, rng: random.Random) -> tuple[str, Any]:
    """``doc`` with one change: a leaf or branch replaced (`hostile_value`), a key removed or
    an unknown key added; a label saying which."""
    doc = copy.deepcopy(doc)
    path = rng.choice([p for p in _paths(doc) if p])
    *parent_path, key = path
    parent = doc
    for step in parent_path:
        parent = parent[step]
    where = ".".join(map(str, path))
    roll = rng.random()
    if roll < 0.1 and isinstance(parent, dict):
        del parent[key]
        return f"{where} removed", doc
    if roll < 0.2 and isinstance(parent, dict):
        parent[f"unknown_{rng.randrange(100)}"] = rng.choice(HOSTILE)
        return f"{where}: a key added beside it", doc
    label, value = hostile_value(rng, parent[key])
    parent[key] = value
    return f"{where} = {label}", doc


def mutate_lines(lines: list[str], rng: random.Random) -> tuple[str, list[str]]:
    """JSON Lines with one row changed (`mutate_json`) or one line replaced by junk."""
    lines = list(lines)
    i = rng.randrange(len(lines))
    if rng.random() < 0.2:
        junk = rng.choice(JUNK_LINES)
        lines[i] = junk
        return f"line {i + 1} = {junk[:30]!r}", lines
    label, row = mutate_json(json.loads(lines[i]), rng)
    lines[i] = json.dumps(row)
    return f"line {i + 1}: {label}", lines


# ------------------------------------------------------------------------------ audio
def hostile_wav(rng: random.Random) -> tuple[str, bytes]:
    """A WAV with some header fields chosen from the edges, possibly cut or flipped."""
    fields = {"rate": 44100, "channels": 2, "bits": 16, "fmt_tag": 1, "data_size": None}
    picks = rng.sample(sorted(fields), rng.randint(1, 3))
    choices = {"rate": RATES, "channels": CHANNELS, "bits": BITS, "fmt_tag": FORMAT_TAGS,
               "data_size": SIZES}  # fmt: skip
    for name in picks:
        fields[name] = rng.choice(choices[name])
    data = bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 7, 4000])))
    raw = wav_bytes(data=data, **fields)
    label = ", ".join(f"{k}={fields[k]}" for k in picks)
    return f"wav {label}", _damage(raw, rng, header=44)


def hostile_flac(rng: random.Random, base: bytes) -> tuple[str, bytes]:
    """A true FLAC with STREAMINFO fields patched, possibly cut or flipped."""
    fields: dict[str, int] = {}
    for name, values in (
        ("rate", [0, 1, 7999, 8000, 384000, 384001, 2**20 - 1]),
        ("channels", [1, 2, 3, 8]),
        ("bits", [1, 4, 8, 16, 24, 32]),
        ("frames", [0, 1, 100, 2**20, 2**32, 2**36 - 1]),
    ):
        if rng.random() < 0.4:
            fields[name] = rng.choice(values)
    raw = patch_flac(base, **fields)
    label = ", ".join(f"{k}={v}" for k, v in fields.items()) or "as written"
    return f"flac {label}", _damage(raw, rng, header=42)


def _damage(raw: bytes, rng: random.Random, header: int) -> bytes:
    roll = rng.random()
    if roll < 0.15:
        return raw[: rng.randrange(len(raw) + 1)]
    if roll < 0.3:
        out = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            at = (
                rng.randrange(min(header, len(out)))
                if rng.random() < 0.7
                else rng.randrange(len(out))
            )
            out[at] = rng.getrandbits(8)
        return bytes(out)
    return raw


def hostile_audio(rng: random.Random, flac_base: bytes) -> tuple[str, str, bytes]:
    """(label, suffix, bytes) of a hostile WAV or FLAC."""
    if rng.random() < 0.5:
        label, raw = hostile_wav(rng)
        return label, ".wav", raw
    label, raw = hostile_flac(rng, flac_base)
    return label, ".flac", raw


def flac_base() -> bytes:
    """The valid FLAC the FLAC mutations start from: 0.25 s of noise, 44.1 kHz, 16-bit."""
    rng = np.random.default_rng(0)
    return flac_bytes(0.3 * rng.standard_normal(11025), 44100)


# ------------------------------------------------------------------------------ targets
def read_audio_main(args: list[str]) -> int:
    """Target of the ``audio`` campaign: read ``args[0]`` as rmod does (whole file) and as
    dose_model does (4 s prefix at 44.1 kHz, two clips); 0 when it is audio, 2 and one line
    when it is refused."""
    from dose_model.dataset.audio import load_mono, read_clips
    from rmod.audio import read_audio
    from rmod_dose_common.audio import AudioReadError

    try:
        read_audio(args[0])
        load_mono(args[0], 44100, 4 * 44100)
        read_clips(args[0], 44100, [0, 22050], 44100)
    except AudioReadError as err:
        print(f"read-audio: error: {err}", file=sys.stderr)
        return 2
    return 0


def dose_manifest_main(args: list[str]) -> int:
    """Target of the ``dose-manifest`` campaign: read the manifest ``args[0]`` as
    dose-tokenize does, then each row's audio (4 s, 1 s); 2 and one line when the manifest
    is refused, 1 when a row's audio is (one line each), else 0."""
    from dose_model.dataset.audio import RowAudioError, load_mono
    from dose_model.dataset.manifest import read_rows
    from dose_model.errors import DoseError

    try:
        rows = read_rows(args[0])
    except DoseError as err:
        print(f"dose-manifest: error: {err}", file=sys.stderr)
        return 2
    skipped = 0
    for row in rows:
        try:
            load_mono(row.mixture, 44100, 4 * 44100)
            for path in row.oneshots.values():
                load_mono(path, 44100, 44100)
        except RowAudioError as err:
            print(f"dose-manifest: skipped {row.id}: {err}", file=sys.stderr)
            skipped += 1
    return 1 if skipped else 0


# ------------------------------------------------------------------------------ campaigns
@dataclass
class Case:
    """One input: what was changed (``label``) and the target's arguments."""

    label: str
    args: list[str]


class Campaign:
    """A surface to fuzz: its ``target`` (for `tests.fuzzing.Runner`), modules to ``preload``
    in the fork server, its world (:meth:`setup`) and its cases (:meth:`case`)."""

    name = ""
    target = ""
    preload: tuple[str, ...] = ()

    def setup(self, folder: Path) -> None:
        """Write the valid files the cases start from into ``folder``."""
        self.folder = folder
        self.flac = flac_base()

    def case(self, rng: random.Random, i: int) -> Case:
        """Write case ``i``'s input and return it."""
        raise NotImplementedError

    def _audio_file(
        self, rng: random.Random, stem: str, folder: Path | None = None
    ) -> tuple[str, Path]:
        label, suffix, raw = hostile_audio(rng, self.flac)
        path = (folder or self.folder) / f"{stem}{suffix}"
        path.write_bytes(raw)
        return label, path


class AudioCampaign(Campaign):
    name, target = "audio", "tests.fuzz_cases:read_audio_main"
    preload = ("dose_model.dataset.audio", "rmod.audio", "scipy.signal")

    def case(self, rng: random.Random, i: int) -> Case:
        label, path = self._audio_file(rng, f"case-{i % 8}")
        return Case(label, [str(path)])


def _tiny_models(folder: Path) -> tuple[Path, Path]:
    from tests.dose_fixtures import write_tiny_codec, write_tiny_dose_checkpoint

    codec = write_tiny_codec(folder / "codec.pth", loud=True)
    return codec, write_tiny_dose_checkpoint(folder / "kick.ckpt", max_target_len=14)


class ExtractCampaign(Campaign):
    name, target = "dose-extract", "dose_model.cli.extract:main"
    preload = ("torch", "dose_model.extract.songs", "dose_model.model.checkpoints", "scipy.signal")

    def setup(self, folder: Path) -> None:
        super().setup(folder)
        self.codec, self.ckpt = _tiny_models(folder)

    def case(self, rng: random.Random, i: int) -> Case:
        label, path = self._audio_file(rng, f"song-{i % 8}")
        out = self.folder / "out"
        shutil.rmtree(out, ignore_errors=True)
        args = [str(path), "--out", str(out), "--kick", str(self.ckpt), "--codec-weights"]
        return Case(label, [*args, str(self.codec), "--no-progress", "--device", "cpu"])


def _fake_dataset(folder: Path) -> Path:
    """A tiny RMOD-format dataset with a FIFO, a link to /dev/zero and a hostile file among
    its audio (what manifest mutations may point at)."""
    from tests.dose_fixtures import write_fake_rmod

    ds = write_fake_rmod(folder / "ds", {"train": 2}, mixture_seconds=1.0, oneshot_seconds=0.5)
    os.mkfifo(ds / "train" / "fifo.wav")
    (ds / "train" / "link.wav").symlink_to("/dev/zero")
    (ds / "train" / "hostile.wav").write_bytes(wav_bytes(2**31 - 1))
    return ds


class DoseManifestCampaign(Campaign):
    name, target = "dose-manifest", "tests.fuzz_cases:dose_manifest_main"
    preload = ("dose_model.dataset.manifest", "dose_model.dataset.audio", "scipy.signal")

    def setup(self, folder: Path) -> None:
        super().setup(folder)
        self.ds = _fake_dataset(folder)
        self.manifest = self.ds / "manifests" / "train.jsonl"
        self.lines = self.manifest.read_text().splitlines()

    def case(self, rng: random.Random, i: int) -> Case:
        label, lines = mutate_lines(self.lines, rng)
        self.manifest.write_text("\n".join(lines) + "\n")
        return Case(label, [str(self.manifest)])


class TokenizeCampaign(Campaign):
    """dose-tokenize on a manifest whose rows point at hostile audio (in ``DIR``)."""

    name, target = "dose-tokenize", "dose_model.cli.tokenize:main"
    preload = ("torch", "dose_model.cache.tokenize", "scipy.signal")

    def setup(self, folder: Path) -> None:
        super().setup(folder)
        self.codec, _ = _tiny_models(folder)
        self.ds = _fake_dataset(folder)
        self.manifest = self.ds / "manifests" / "train.jsonl"
        self.rows = [json.loads(line) for line in self.manifest.read_text().splitlines()]

    def case(self, rng: random.Random, i: int) -> Case:
        rows = copy.deepcopy(self.rows)
        label, path = self._audio_file(rng, "fuzzed", self.ds / "train")
        row = rng.choice(rows)
        role = rng.choice(["mixture", "kick", "snare", "hihat"])
        rel = path.relative_to(self.ds).as_posix()
        if role == "mixture":
            row["mixture"] = rel
        else:
            row["oneshots"][role] = rel
        self.manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
        out = self.folder / "tok"
        shutil.rmtree(out, ignore_errors=True)
        args = ["--manifest", str(self.manifest), "--out", str(out), "--codec-weights"]
        args += [str(self.codec), "--device", "cpu", "--no-progress", "--max-skipped", "1000"]
        return Case(f"{row['id']} {role}: {label}", args)


def _small_library(folder: Path) -> Path:
    from tests.conftest import write_small_library

    return write_small_library(folder / "lib").library_path


class VerifyCampaign(Campaign):
    """rmod-verify on a built dataset whose manifest rows or build.json are mutated."""

    name, target = "rmod-verify", "rmod.cli.verify:main"
    preload = ("rmod.inspect.verify", "soundfile")

    def setup(self, folder: Path, library: Path | None = None) -> None:
        from tests.rmod_fixtures import build_tiny

        super().setup(folder)
        library = library or _small_library(folder)
        self.ds = build_tiny(folder, library, "rmod-paper", n=2, shard_size=2, sample_rate=22050)
        self.files = {
            p: p.read_text()
            for p in [self.ds / "build.json", *sorted((self.ds / "manifests").glob("*.jsonl"))]
        }

    def case(self, rng: random.Random, i: int) -> Case:
        for path, text in self.files.items():
            path.write_text(text)
        path = rng.choice(sorted(self.files))
        if path.name == "build.json":
            label, doc = mutate_json(json.loads(self.files[path]), rng)
            path.write_text(json.dumps(doc))
        else:
            label, lines = mutate_lines(self.files[path].splitlines(), rng)
            path.write_text("\n".join(lines) + "\n")
        return Case(f"{path.name} {label}", [str(self.ds), "--jobs", "1", "--no-progress"])


class RenderOneCampaign(Campaign):
    """rmod-render-one --from an example.json with one leaf changed."""

    name, target = "render-one", "rmod.cli.render_one:main"
    preload = ("rmod.example.render", "rmod.library.catalog", "rmod.recipe.spec")

    def setup(self, folder: Path, library: Path | None = None) -> None:
        from rmod.cli.render_one import main
        from tests.rmod_fixtures import write_tiny_recipe

        super().setup(folder)
        library = library or _small_library(folder)
        recipe = write_tiny_recipe(folder, sample_rate=22050)
        first = folder / "first"
        argv = ["--seed", "3", "--out", str(first), "--recipe", recipe, "--library", str(library)]
        assert main([*argv, "--no-overview"]) == 0
        self.doc = json.loads((first / "example.json").read_text())

    def case(self, rng: random.Random, i: int) -> Case:
        label, doc = mutate_json(self.doc, rng)
        case = self.folder / "case"
        shutil.rmtree(case, ignore_errors=True)
        case.mkdir()
        (case / "example.json").write_text(json.dumps(doc))
        args = ["--from", str(case / "example.json"), "--out", str(case / "out"), "--no-overview"]
        return Case(label, args)


CAMPAIGNS: dict[str, type[Campaign]] = {
    c.name: c
    for c in (AudioCampaign, ExtractCampaign, DoseManifestCampaign, TokenizeCampaign,
              VerifyCampaign, RenderOneCampaign)
}  # fmt: skip


def run_campaign(campaign: Campaign, seeds, limits=None, on_outcome=None) -> list[tuple[Case, Any]]:
    """Run ``campaign`` (set up) on the cases of ``seeds`` (an iterable of ints, which may be
    endless: stop by breaking out of ``on_outcome``'s caller); returns (case, outcome) of
    every input that broke the promise. ``on_outcome(case, outcome)`` sees every input and
    returns False to stop."""
    from tests.fuzzing import Limits, Runner

    found = []
    with Runner(campaign.target, limits or Limits(), campaign.preload) as runner:
        for seed in seeds:
            case = campaign.case(random.Random(seed), seed)
            outcome = runner.run(case.args, label=f"{campaign.name} #{seed}: {case.label}")
            if outcome.problem() is not None:
                found.append((case, outcome))
            if on_outcome is not None and on_outcome(case, outcome) is False:
                break
    return found


__all__ = ["CAMPAIGNS", "Case", "Campaign", "mutate_json", "mutate_lines", "run_campaign"]
