"""dose-eval: MSS per row and drum beside the codec's reconstruction and silence; bad rows."""

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from dose_model.cli.evaluate import main
from dose_model.evaluate.baseline import baseline_oneshot
from dose_model.evaluate.metrics import mss_distance
from tests.dose_fixtures import (  # noqa: F401 (one_thread: autouse fixture)
    one_thread,
    write_fake_rmod,
    write_tiny_codec,
    write_tiny_dose_checkpoint,
)

HOP = 512
ROWS = 14  # max_target_len: the ground truth is cut to (14 - 10) frames = 2048 samples


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    data = write_fake_rmod(root / "rmod", counts={"valid": 1, "test": 3})
    codec = write_tiny_codec(root / "codec.pth", loud=True)  # decodes to audible levels
    ckpt = write_tiny_dose_checkpoint(root / "kick.ckpt", max_target_len=ROWS)
    return data, codec, ckpt


def read_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_scores_every_row_and_drum_independently_of_batching(setup, tmp_path, capsys):
    data, codec, ckpt = setup
    argv = ["--manifest", str(data), "--codec-weights", str(codec), "--kick", str(ckpt)]
    argv += ["--hihat", str(ckpt), "--no-progress", "--device", "cpu", "--save-audio"]
    argv += ["--strategy", "top-p", "--seed", "7"]
    assert main(argv + ["--out", str(tmp_path / "a"), "--batch-size", "2"]) == 0
    table = capsys.readouterr().out.splitlines()
    head = ["drum", "rows", "MSS", "model", "MSS", "baseline", "MSS", "DAC", "MSS", "silence"]
    assert table[0].split() == head
    assert [line.split()[:2] for line in table[1:3]] == [["kick", "3"], ["hihat", "3"]]
    rows = read_rows(tmp_path / "a" / "rows.csv")
    assert [(r["id"], r["drum"]) for r in rows] == [
        (f"test-{i:06d}", d) for i in range(3) for d in ("kick", "hihat")
    ]
    n = (ROWS - 10) * HOP
    for r in rows:
        truth, sr = sf.read(data / "test" / "000000" / f"{r['id']}_{r['drum']}.wav")
        ref = truth.mean(axis=1)[:n]
        silence = mss_distance(np.zeros_like(ref), ref)
        assert float(r["mss_silence"]) == pytest.approx(silence, rel=1e-4)
        # the estimate is the saved one-shot, cut to the reference's length
        wav, _ = sf.read(tmp_path / "a" / "audio" / f"{r['id']}.{r['drum']}.wav")
        assert wav.shape == (int(r["frames"]) * HOP,) and np.abs(wav).max() > 0.01
        model = mss_distance(np.pad(wav, (0, max(0, n - wav.size)))[:n], ref)
        assert float(r["mss_model"]) == pytest.approx(model, rel=1e-3)
        assert float(r["mss_model"]) != pytest.approx(silence, rel=1e-3)
        assert float(r["mss_dac"]) != pytest.approx(silence, rel=1e-3)
        mixture, _ = sf.read(data / "test" / "000000" / f"{r['id']}_mix.wav", dtype="float32")
        baseline = baseline_oneshot(mixture.mean(axis=1), sr, r["drum"], n)
        assert float(r["mss_baseline"]) == pytest.approx(mss_distance(baseline, ref), rel=1e-4)
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["rows"] == {"kick": 3, "hihat": 3} and summary["skipped"] == []
    assert summary["batch_size"] == 2 and summary["sampling"]["seed"] == 7
    kick = [float(r["mss_model"]) for r in rows if r["drum"] == "kick"]
    assert summary["scores"]["kick"]["mss_model"]["mean"] == pytest.approx(np.mean(kick), rel=1e-4)
    # top-p rows draw from their own seeds: batch 3 gives the same sounds as batch 2
    assert main(argv + ["--out", str(tmp_path / "b"), "--batch-size", "3"]) == 0
    assert (tmp_path / "a" / "rows.csv").read_text() == (tmp_path / "b" / "rows.csv").read_text()
    for wav in sorted((tmp_path / "a" / "audio").iterdir()):
        assert wav.read_bytes() == (tmp_path / "b" / "audio" / wav.name).read_bytes()


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
    assert main(argv + ["--kick", str(ckpt), "--split", "train"]) == 2
    assert "no train manifest (found: ['test', 'valid'])" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(argv)
    capsys.readouterr()
    # a manifest file: its own split, not the folder default "test"
    valid = data / "manifests" / "valid.jsonl"
    argv = ["--manifest", str(valid), "--codec-weights", str(codec), "--kick", str(ckpt)]
    assert main(argv + ["--out", str(tmp_path / "v"), "--no-progress"]) == 0
    assert "1 scores from the valid split" in capsys.readouterr().out


def test_save_audio_never_writes_outside_out(setup, tmp_path, capsys):
    """A manifest row id that could put a file outside OUT (absolute, ``..``) stops the run
    before any work with one line naming it: the manifest reader refuses ids that are not
    ``split-index``, and the audio path is proven inside OUT/audio as a second guard."""
    data, codec, ckpt = setup
    import shutil

    from dose_model.evaluate.split import EvalError, audio_path

    copy = tmp_path / "rmod"
    shutil.copytree(data, copy)
    manifest = copy / "manifests" / "test.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    out = tmp_path / "deep" / "out"
    argv = ["--manifest", str(copy), "--codec-weights", str(codec), "--kick", str(ckpt)]
    argv += ["--out", str(out), "--no-progress", "--max-rows", "2"]
    for bad_id in ("../../evil", str(tmp_path / "abs-evil"), "a/../../../evil"):
        rows[1]["id"] = bad_id
        manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
        for extra in (["--save-audio"], []):
            assert main(argv + extra) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and repr(bad_id) in err
            assert not out.exists()  # refused before anything was written
            assert not list(tmp_path.rglob("*evil*"))
        with pytest.raises(EvalError, match="would lie outside"):
            audio_path(out, bad_id, "kick")
    assert (
        audio_path(out, "test-000001", "kick") == (out / "audio" / "test-000001.kick.wav").resolve()
    )


def test_candidates_score_the_most_confident_sample(setup, tmp_path):
    """--candidates K: each row and drum is scored on its most confident of K samples, and
    its score is at least that of the single sample of a K = 1 run (same first seed)."""
    data, codec, ckpt = setup
    argv = ["--manifest", str(data), "--codec-weights", str(codec), "--kick", str(ckpt)]
    argv += ["--no-progress", "--device", "cpu", "--strategy", "top-p", "--batch-size", "4"]
    argv += ["--max-rows", "2"]
    assert main(argv + ["--out", str(tmp_path / "one")]) == 0
    assert main(argv + ["--out", str(tmp_path / "three"), "--candidates", "3"]) == 0
    one = read_rows(tmp_path / "one" / "rows.csv")
    three = read_rows(tmp_path / "three" / "rows.csv")
    assert [r["id"] for r in one] == [r["id"] for r in three]
    for a, b in zip(one, three, strict=True):
        assert float(b["score"]) >= float(a["score"]) - 1e-4
    assert any(
        float(b["score"]) > float(a["score"]) + 1e-4 for a, b in zip(one, three, strict=True)
    )
    summary = json.loads((tmp_path / "three" / "summary.json").read_text())
    assert summary["sampling"]["candidates"] == 3 and summary["precision"] == "fp32"
