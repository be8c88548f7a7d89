"""``rmod-build --tokens``: a build that writes the DAC token cache and the manifests but no
audio. Its tokens equal ``dose-tokenize`` on a stored build of the same recipe and seed (a
tiny random codec; the recipe's 22.05 kHz audio is resampled to the codec's 44.1 kHz on the
way, as dose-tokenize does with files); any row renders again to the stored files; a killed
build resumes to the same bytes; rmod-verify checks what exists; mismatches are refused.

rmod finds the sink through the ``rmod.token_sinks`` entry points of the installed package
(setup.cfg), never by import."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from dose_model.cache.index import read_index
from dose_model.cache.options import TokenizeOptions
from dose_model.cache.tokenize import tokenize_manifest
from dose_model.train.batches import TokenDataset
from rmod.build.run import BuildOptions, BuildRefused, build
from rmod.build.sink import SinkSpec
from rmod.errors import InputError
from tests.dose_fixtures import one_thread, write_tiny_codec  # noqa: F401 (one_thread: autouse)
from tests.rmod.test_build import SCHEMA, validate
from tests.rmod_fixtures import write_tiny_recipe

SR = 22050
SHARD = 2
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def kw(small_library, tmp_path_factory) -> dict:
    recipe = write_tiny_recipe(tmp_path_factory.mktemp("recipe"), sample_rate=SR)
    return dict(
        n=3, recipe=recipe, library=str(small_library.path), seed=5, shard_size=SHARD, jobs=1,
        progress=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return write_tiny_codec(tmp_path_factory.mktemp("codec") / "tiny.pth", seed=3)


def build_ok(**options) -> None:
    torch.set_num_threads(1)
    summary = build(BuildOptions(**options))
    assert summary.ok, summary.error


@pytest.fixture(scope="module")
def stored(kw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stored") / "ds"
    build_ok(out=out, **kw)
    return out


@pytest.fixture(scope="module")
def tokens(kw, weights, tmp_path_factory) -> tuple[Path, Path]:
    """A --tokens build: (its dataset folder, its token cache)."""
    folder = tmp_path_factory.mktemp("tokens")
    spec = SinkSpec("dac", str(folder / "tok"), {"codec_weights": str(weights)})
    build_ok(out=folder / "ds", tokens=spec, **kw)
    return folder / "ds", folder / "tok"


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def rows(ds: Path, split: str) -> list[dict]:
    return [
        json.loads(line) for line in (ds / "manifests" / f"{split}.jsonl").read_text().splitlines()
    ]


def test_tokens_equal_dose_tokenize_on_the_stored_build(stored, tokens, weights, tmp_path):
    ds, tok = tokens
    files = sorted(str(p.relative_to(ds)) for p in ds.rglob("*") if p.is_file())
    assert files == sorted([
        ".rmod-build.lock", "build.json",
        *(f"manifests/{s}.jsonl" for s in ("test", "train", "valid")),
        "manifests/parts/test-000000.jsonl", "manifests/parts/train-000000.jsonl",
        "manifests/parts/train-000001.jsonl", "manifests/parts/valid-000000.jsonl",
    ])  # fmt: skip
    info = json.loads((ds / "build.json").read_text())
    assert info["stored"] is False
    assert "stored" not in json.loads((stored / "build.json").read_text())
    schema = json.loads(SCHEMA.read_text())  # the documented format holds both
    assert validate(info, schema["$defs"]["build"], schema) == []
    assert validate(rows(ds, "train")[0], schema["$defs"]["row"], schema) == []
    for split in ("train", "valid", "test"):  # the same rows, files recorded, not stored
        mine = rows(ds, split)
        assert [r.pop("stored") for r in mine] == [False] * len(mine)
        assert mine == rows(stored, split)
    ref = tmp_path / "ref"
    tokenize_manifest(TokenizeOptions(stored, weights, ref, shard_size=SHARD, progress=False))
    shards = {k: v for k, v in tree_bytes(ref).items() if k != "index.json"}
    assert len(shards) == 4 * 5  # 4 shards: mixture, kick, snare, hihat codes + meta
    assert {k: v for k, v in tree_bytes(tok).items() if k != "index.json"} == shards
    mine, theirs = read_index(tok), read_index(ref)
    assert mine["complete"] and mine["splits"] == theirs["splits"]
    assert mine["config"].pop("source")["rmod_build"]["seed"] == 5
    for config in (mine["config"], theirs["config"]):
        for m in config["manifests"].values():
            m.pop("path"), m.pop("sha256")
    assert mine["config"] == theirs["config"]
    assert len(TokenDataset(tok, "train", "kick")) == 3
    # dose-tokenize's own shard and batch sizes give the same codes, row for row (on the CPU)
    default = tmp_path / "default"
    tokenize_manifest(TokenizeOptions(stored, weights, default, progress=False))
    for split, n_shards in (("train", 2), ("valid", 1), ("test", 1)):
        for name in ("mixture", "kick", "snare", "hihat"):
            mine = [np.load(tok / split / f"{i:06d}" / f"{name}.npy") for i in range(n_shards)]
            theirs = np.load(default / split / "000000" / f"{name}.npy")
            assert np.array_equal(np.concatenate(mine), theirs)


def test_any_row_renders_again_to_the_files_it_records(stored, tokens, tmp_path):
    from rmod.cli.render_one import main as render_one

    ds, _ = tokens
    row = rows(ds, "train")[2]
    out = tmp_path / "again"
    manifest = str(ds / "manifests" / "train.jsonl")
    assert (
        render_one(["--from", manifest, "--id", row["id"], "--out", str(out), "--no-overview"]) == 0
    )
    for role in ("mixture", "kick", "snare", "hihat"):
        data = (out / f"{role}.wav").read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["checksums"][role]
        name = row["mixture"] if role == "mixture" else row["oneshots"][role]
        assert data == (stored / name).read_bytes()


KILL = textwrap.dedent(
    """
    import json, os, signal, sys
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    from dose_model.cache.sink import DacTokenSink
    from rmod.build.run import BuildOptions, build
    from rmod.build.sink import SinkSpec
    commit, calls = DacTokenSink.commit_shard, []
    def commit_then_die(self, split, number):
        calls.append(number)
        if len(calls) == 2:  # the second shard: its token shard is written, its part is not
            commit(self, split, number)
            (self.out / split / ".tmp-000009.dead").mkdir()
            os.kill(os.getpid(), signal.SIGKILL)
        return commit(self, split, number)
    DacTokenSink.commit_shard = commit_then_die
    kw = json.loads(sys.argv[1])
    spec = SinkSpec("dac", kw.pop("tok"), {"codec_weights": kw.pop("weights")})
    build(BuildOptions(tokens=spec, **kw))
    """
)


@pytest.mark.slow
def test_a_killed_tokens_build_resumes_to_the_same_bytes(kw, weights, tokens, tmp_path):
    ds, tok = tmp_path / "ds", tmp_path / "tok"
    args = dict(kw, out=str(ds), tok=str(tok), weights=str(weights))
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-c", KILL, json.dumps(args)], capture_output=True, env=env, timeout=300
    )
    assert proc.returncode == -9, proc.stderr.decode()[-3000:]
    assert read_index(tok)["complete"] is False
    assert [p.name for p in (ds / "manifests" / "parts").iterdir()] == ["train-000000.jsonl"]
    assert (tok / "train" / "000001").is_dir()  # committed by the sink, not by the build
    spec = SinkSpec("dac", str(tok), {"codec_weights": str(weights)})
    summary = build(BuildOptions(out=ds, tokens=spec, **kw))
    assert summary.ok and summary.reused == 2 and summary.rendered == 3
    mine, ref = tree_bytes(tok), tree_bytes(tokens[1])
    mine_index, ref_index = json.loads(mine.pop("index.json")), json.loads(ref.pop("index.json"))
    assert mine == ref  # every token shard
    for index in (mine_index, ref_index):  # the index differs in where the manifests are
        assert index["complete"]
        for m in index["config"]["manifests"].values():
            m.pop("path")
    assert mine_index == ref_index
    assert tree_bytes(ds) == tree_bytes(tokens[0])


def test_verify_checks_what_a_tokens_build_has(tokens, tmp_path, capsys):
    import shutil

    from rmod.cli.verify import main as verify

    ds = tmp_path / "ds"
    shutil.copytree(tokens[0], ds)
    assert verify([str(ds), "--no-progress"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert (
        line.startswith("rmod-verify OK: 5 rows, 0 files checked") and "5 rows not stored" in line
    )
    (ds / "train" / "000000").mkdir(parents=True)
    (ds / "train" / "000000" / "train-00000000.mixture.wav").write_bytes(b"RIFF")
    text = (ds / "manifests" / "valid.jsonl").read_text()
    (ds / "manifests" / "valid.jsonl").write_text(text.replace('"stored":false', '"stored":true'))
    assert verify([str(ds), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "train/000000: 1 file(s) that no manifest row points to" in out
    assert "valid-00000000: row says its files are stored, build.json says not" in out
    assert "valid/000000/valid-00000000.mixture.wav: valid-00000000: file is missing" in out
    # a hand-made build.json claiming tars for a build that stores nothing is refused whole
    info = json.loads((ds / "build.json").read_text())
    (ds / "build.json").write_text(json.dumps(info | {"layout": "tar"}))
    assert verify([str(ds), "--no-progress"]) == 1
    assert "layout: tar with stored: false, which no build writes" in capsys.readouterr().out


def test_refusals(kw, weights, tokens, tmp_path, capsys):
    from rmod.cli.build import main as build_cli

    ds, tok = tokens
    with pytest.raises(BuildRefused, match="stored: the existing build writes tokens only"):
        build(BuildOptions(out=ds, **kw))  # the same folder without --tokens
    other = dict(kw, seed=6)
    spec = SinkSpec("dac", str(tok), {"codec_weights": str(weights)})
    with pytest.raises(InputError, match="another build or other settings .*source"):
        build(BuildOptions(out=tmp_path / "ds", tokens=spec, **other))
    with pytest.raises(InputError, match="no token sink 'nope' is installed .*dac"):
        build(BuildOptions(out=tmp_path / "x", tokens=SinkSpec("nope", str(tmp_path / "t")), **kw))
    with pytest.raises(InputError, match="not the dataset folder"):
        build(
            BuildOptions(
                out=tmp_path / "y", tokens=SinkSpec("dac", str(tmp_path / "y" / "train")), **kw
            )
        )
    assert build_cli(["--n", "1", "--out", str(tmp_path / "z"), "--codec-weights", "w"]) == 2
    assert "--codec-weights and --token-option need --tokens" in capsys.readouterr().err
    args = ["--n", "1", "--out", str(tmp_path / "z"), "--tokens", str(tmp_path / "t")]
    assert build_cli([*args, "--codec-weights", str(tmp_path / "missing.pth")]) == 2
    assert "missing.pth: DAC weights file not found" in capsys.readouterr().err
    assert (
        build_cli([*args, "--token-option", "batch_size=x", "--codec-weights", str(weights)]) == 2
    )
    assert "option batch_size: invalid literal" in capsys.readouterr().err
    assert not (tmp_path / "z").exists()  # refused before anything was written


def test_tokens_with_the_tar_layout_is_refused_before_any_work(kw, weights, tmp_path, capsys):
    """A --tokens build writes no audio, so there is nothing to put in tars: --layout tar
    with --tokens is refused in one line, before the output or token folder is made."""
    from rmod.cli.build import main as build_cli

    ds, tok = tmp_path / "ds", tmp_path / "tok"
    spec = SinkSpec("dac", str(tok), {"codec_weights": str(weights)})
    with pytest.raises(InputError, match="--tokens writes no audio.*--layout tar"):
        build(BuildOptions(out=ds, tokens=spec, layout="tar", **kw))
    args = ["--n", "1", "--out", str(ds), "--tokens", str(tok), "--codec-weights", str(weights)]
    assert build_cli([*args, "--layout", "tar"]) == 2
    err = capsys.readouterr().err
    assert "nothing to put in tars" in err and len(err.strip().splitlines()) == 1
    assert not ds.exists() and not tok.exists()


def test_a_damaged_token_shard_is_rendered_again(kw, weights, tokens, tmp_path):
    """A committed shard whose token file was cut short (a disk fault) is not trusted on a
    rerun: that shard alone is rendered and encoded again, and the cache is whole."""
    import shutil

    ds, tok = tmp_path / "ds", tmp_path / "tok"
    shutil.copytree(tokens[0], ds)
    shutil.copytree(tokens[1], tok)
    kick = tok / "train" / "000001" / "kick.npy"
    kick.write_bytes(kick.read_bytes()[:-5])
    spec = SinkSpec("dac", str(tok), {"codec_weights": str(weights)})
    summary = build(BuildOptions(out=ds, tokens=spec, **kw))
    assert summary.ok and summary.rendered == 1 and summary.shards_rendered == 1
    assert kick.read_bytes() == (tokens[1] / "train" / "000001" / "kick.npy").read_bytes()
    assert read_index(tok)["complete"] is True
