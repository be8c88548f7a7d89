"""dose_model on hostile input: manifests whose ids or paths point outside the dataset, a
full disk while tokenizing, absurd model sizes, broken checkpoints. Each is a one-line error
naming the file (and row), never a traceback, a read outside DIR or an out-of-memory."""

from __future__ import annotations

import errno
import json
import os

import pytest
import torch

from dose_model.dataset.manifest import ManifestError, read_rows
from dose_model.model.checkpoints import CheckpointError, load_any_model
from dose_model.model.config import ConfigError, ModelConfig, load_config
from tests.dose_fixtures import write_fake_rmod, write_tiny_codec, write_tiny_dose_checkpoint


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    return write_fake_rmod(root / "ds", {"train": 2}, seed=1, mixture_seconds=0.5)


def _rewrite(dataset, path, change):
    rows = [json.loads(line) for line in (dataset / "manifests" / "train.jsonl").open()]
    change(rows[1])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_ids_and_paths_that_leave_the_dataset_are_refused(dataset, tmp_path):
    """Ids must be split-index (safe as file names); absolute, ``..`` and symlinked paths
    that resolve outside DIR are refused naming the manifest line, row and path."""
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(dataset, root)
    manifest = root / "manifests" / "train.jsonl"
    first_mixture = read_rows(manifest)[0].mixture
    outside = tmp_path / "elsewhere.wav"
    outside.write_bytes(first_mixture.read_bytes())
    cases = {
        "../../etc/passwd": ("id", "../../etc/passwd"),
        "/etc/passwd": ("mixture", "/etc/passwd"),
        "'../elsewhere.wav'": ("mixture", "../elsewhere.wav"),
        "'train/../../elsewhere.wav'": ("kick", "train/../../elsewhere.wav"),
    }
    for shown, (field, value) in cases.items():

        def change(row, field=field, value=value):
            if field == "kick":
                row["oneshots"]["kick"] = value
            else:
                row[field] = value

        _rewrite(dataset, manifest, change)
        with pytest.raises(ManifestError, match=f"train.jsonl:2: .*{shown}") as err:
            read_rows(manifest)
        assert field == "id" or "row train-000001" in str(err.value)

    link = root / "train" / "000000" / "link.wav"
    link.symlink_to(outside)  # a link that leads out of DIR: refused
    _rewrite(dataset, manifest, lambda row: row.update(mixture="train/000000/link.wav"))
    with pytest.raises(ManifestError, match="row train-000001: field 'mixture'.*leaves"):
        read_rows(manifest)
    folder_link = root / "train" / "sneaky"
    folder_link.symlink_to(tmp_path, target_is_directory=True)  # a folder link, too
    _rewrite(dataset, manifest, lambda row: row.update(mixture="train/sneaky/elsewhere.wav"))
    with pytest.raises(ManifestError, match="leaves the dataset folder"):
        read_rows(manifest)
    inside = root / "train" / "000000" / "inside.wav"
    inside.symlink_to(first_mixture)
    _rewrite(dataset, manifest, lambda row: row.update(mixture="train/000000/inside.wav"))
    assert read_rows(manifest)[1].mixture.name == "inside.wav"  # links inside DIR are fine


def test_dose_tokenize_refuses_an_escaping_row_and_survives_a_full_disk(
    dataset, tmp_path, capsys, monkeypatch
):
    import numpy as np

    from dose_model.cli.tokenize import main

    codec = write_tiny_codec(tmp_path / "codec.pth")
    bad = _rewrite(dataset, tmp_path / "bad" / "manifests" / "train.jsonl",
                   lambda row: row.update(mixture="/etc/passwd"))  # fmt: skip
    argv = ["--codec-weights", str(codec), "--no-progress", "--oneshot-seconds", "0.1"]
    assert main(["--manifest", str(bad), "--out", str(tmp_path / "t1"), *argv]) == 2
    err = capsys.readouterr().err
    assert "row train-000001" in err and "/etc/passwd" in err and err.count("\n") == 1

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(args[0]))

    monkeypatch.setattr(np, "save", full_disk)
    out = tmp_path / "t2"
    argv += ["--shard-size", "1", "--mixture-seconds", "0.5"]
    assert main(["--manifest", str(dataset), "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "rerun the same command" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not [p for p in (out / "train").iterdir() if p.name.startswith(".tmp-")]


def test_absurd_sizes_are_refused_before_allocating(tmp_path):
    """num_layers 10**8 or d_model 10**9 in a config or a checkpoint: refused with the limit
    named, before any tensor is made (the test would run out of memory otherwise)."""
    with pytest.raises(ConfigError, match="model.num_layers is 100000000, above the limit 256"):
        ModelConfig(num_layers=10**8)
    with pytest.raises(ConfigError, match="model.d_model is 1000000000, above the limit"):
        ModelConfig(d_model=10**9, num_heads=1)
    with pytest.raises(ConfigError, match="parameters, above the limit"):
        ModelConfig(num_layers=256, d_model=65536, num_heads=1)
    config = tmp_path / "big.yaml"
    config.write_text("model: {num_layers: 100000000}\n")
    with pytest.raises(ConfigError, match=f"{config}: model.num_layers .* limit 256"):
        load_config(config)
    ckpt = write_tiny_dose_checkpoint(tmp_path / "big.ckpt")
    data = torch.load(ckpt, weights_only=True)
    data["model_config"]["d_model"] = 10**9
    torch.save(data, ckpt)
    with pytest.raises(CheckpointError, match=f"{ckpt}: model.d_model is 1000000000, above"):
        load_any_model(ckpt)


def test_broken_checkpoints_are_named_errors(tmp_path):
    """No model_config, weights of other shapes, missing weights: CheckpointError naming the
    file (what dose-extract and dose-eval print as one line), not a KeyError/RuntimeError."""
    path = write_tiny_dose_checkpoint(tmp_path / "ok.ckpt")
    assert load_any_model(path).config.d_model == 32
    good = torch.load(path, weights_only=True)
    cases = {
        "no 'model_config' mapping": lambda d: d.pop("model_config"),
        "no 'model' weights": lambda d: d.pop("model"),
        "weights do not fit model_config.*size mismatch": lambda d: d["model"].update(
            {"head.weight": torch.zeros(3, 3)}
        ),
        "weights do not fit model_config.*Missing key": lambda d: d["model"].pop("ln_f.weight"),
        "model.num_heads": lambda d: d["model_config"].update(num_heads="many"),
    }
    for pattern, change in cases.items():
        data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in good.items()}
        change(data)
        torch.save(data, tmp_path / "bad.ckpt")
        with pytest.raises(CheckpointError, match=f"bad.ckpt: .*{pattern}"):
            load_any_model(tmp_path / "bad.ckpt")
