"""dose-eval: MSS per row and drum beside the codec's reconstruction and silence; bad rows."""

import csv
import json

import numpy as np
import pytest
import soundfile as sf
from dose_fixtures import (  # noqa: F401 (one_thread: autouse fixture)
    one_thread,
    write_fake_rmod,
    write_tiny_codec,
    write_tiny_dose_checkpoint,
)

from dose_model.cli.evaluate import main
from dose_model.metrics import mss_distance

HOP = 512
ROWS = 14  # max_target_len: the ground truth is cut to (14 - 10) frames = 2048 samples


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    data = write_fake_rmod(root / "rmod", counts={"valid": 1, "test": 3})
    codec = write_tiny_codec(root / "codec.pth")
    ckpt = write_tiny_dose_checkpoint(root / "kick.ckpt", max_target_len=ROWS)
    return data, codec, ckpt


def read_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_scores_every_row_and_drum_independently_of_batching(setup, tmp_path, capsys):
    data, codec, ckpt = setup
    argv = ["--manifest", str(data), "--codec-weights", str(codec), "--kick", str(ckpt)]
    argv += ["--hihat", str(ckpt), "--no-progress", "--device", "cpu"]
    assert main(argv + ["--out", str(tmp_path / "a"), "--batch-size", "2", "--save-audio"]) == 0
    out = capsys.readouterr().out
    table = out.splitlines()
    assert table[0].split() == ["drum", "rows", "MSS", "model", "MSS", "DAC", "MSS", "silence"]
    assert [line.split()[:2] for line in table[1:3]] == [["kick", "3"], ["hihat", "3"]]
    rows = read_rows(tmp_path / "a" / "rows.csv")
    assert [(r["id"], r["drum"]) for r in rows] == [
        (f"test-{i:06d}", d) for i in range(3) for d in ("kick", "hihat")
    ]
    for r in rows:
        truth, sr = sf.read(data / "test" / "000000" / f"{r['id']}_{r['drum']}.wav")
        ref = truth.mean(axis=1)[: (ROWS - 10) * HOP]
        assert float(r["mss_silence"]) == pytest.approx(
            mss_distance(np.zeros_like(ref), ref), rel=1e-4
        )
        assert 0 <= float(r["mss_dac"]) and 0 <= float(r["mss_model"])
        if int(r["frames"]):
            wav = tmp_path / "a" / "audio" / f"{r['id']}.{r['drum']}.wav"
            assert sf.info(wav).frames == int(r["frames"]) * HOP
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["rows"] == {"kick": 3, "hihat": 3} and summary["skipped"] == []
    silence = [float(r["mss_silence"]) for r in rows if r["drum"] == "kick"]
    assert summary["scores"]["kick"]["mss_silence"]["mean"] == pytest.approx(
        np.mean(silence), rel=1e-4
    )
    assert main(argv + ["--out", str(tmp_path / "b"), "--batch-size", "3"]) == 0
    assert (tmp_path / "a" / "rows.csv").read_text() == (tmp_path / "b" / "rows.csv").read_text()


def test_unreadable_row_is_skipped_by_path_and_others_scored(setup, tmp_path, capsys):
    data, codec, ckpt = setup
    broken = tmp_path / "rmod"
    import shutil

    shutil.copytree(data, broken)
    bad = broken / "test" / "000000" / "test-000001_mix.wav"
    bad.write_bytes(b"not audio")
    argv = ["--manifest", str(broken), "--codec-weights", str(codec), "--kick", str(ckpt)]
    assert main(argv + ["--out", str(tmp_path / "o"), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert f"skipped row test-000001: {bad}: cannot decode audio" in captured.err
    assert "1 rows skipped" in captured.out
    rows = read_rows(tmp_path / "o" / "rows.csv")
    assert [r["id"] for r in rows] == ["test-000000", "test-000002"]


def test_missing_split_and_no_model_are_errors(setup, tmp_path, capsys):
    data, codec, ckpt = setup
    argv = ["--manifest", str(data), "--codec-weights", str(codec), "--out", str(tmp_path)]
    assert main(argv + ["--kick", str(ckpt), "--split", "train"]) == 1
    assert "no train manifest (found: ['test', 'valid'])" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(argv)
