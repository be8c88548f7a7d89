"""Time of `dose-eval` per row (kick, snare and hi-hat) with every system and metric, on the CPU.

What it measures, all in one process and one run:

1. Full-size models with seeded random weights, written in the released file formats to a
   temporary folder (nothing downloaded; every layout checked against the key/shape files in
   ``tests/fixtures/reference/``, VGGish's against ``../shared/reference/`` when present):
   DAC 44 kHz (``{"state_dict", "metadata": {"kwargs"}}``, weight-norm g/v), a published DOSE
   checkpoint (10 layers, 16 heads, d_model 1024, ``{"state_dict": {"inst_decoder.*"}}``; one
   file given for kick, snare and hi-hat, loaded three times as three files would be),
   VGGish (torchvggish's plain state dict), CLAP HTSAT-tiny (LAION's ``{"state_dict"}`` with
   ``module.`` keys; the STFT and mel kernels are the real ones, copied from the narrow fixture
   whose front end has the same shapes) and LarsNet (``{stem}/pretrained_{stem}_unet.pth`` x 5,
   BatchNorm running mean 0 and variance 1).
2. A small RMOD dataset from the built-in library (``rmod-build --n max(4, rows)``); its train
   split is scored (``--split train --max-rows ROWS``), as the test split of so small a build
   has one row.
3. ``dose-eval`` twice on the same rows, greedy, fp32, ``--device cpu``, torch threads fixed:
   the baseline with MSS only (no ``--fad``, no ``--larsnet``), then every system and metric
   (``--larsnet``, ``--fad vggish=... --fad clap=...``, ``--bootstrap``). Each run gets a fresh
   embedding cache, so every embedding is computed. Before both, the one-time costs of the
   first call (imports, numba compilation in librosa) are paid by a warm-up outside the timing.
4. A breakdown of each run: every stage wrapped with ``time.perf_counter`` (exclusive times:
   a stage called inside another is counted once, in itself), and a projection to 100 rows.

The projection to 100 rows is given two ways. "linear" is the run's seconds per row times 100.
"batch-aware" keeps the one-time costs (loading, decoder setup, writing the table and report)
once, scales the per-row stages by 100 / rows, counts DOSE generation per decoder batch (the
decoder always runs ``--batch-size`` rows, fewer are padded, so a batch of 3 costs what a batch
of 8 does: 100 rows at dose-eval's CPU default of 8 are ceil(100 / 8) batches per drum), and
times one FAD cell (FAD, FAD-inf and the bootstrap) on random embeddings of the size 100 rows
give, times the number of cells. When the run's ``--batch-size`` differs from
``--target-batch`` (to keep a run short), two short generations at each size (a prefill and a
per-step cost, extrapolated to the full length) scale the measured generation time. Random
weights never emit the end token, so every one-shot runs all decode steps and is decoded at
the full 2 s (a trained model stops earlier: this is the upper bound).

    python benchmarks/bench_eval.py                 # 3 rows, batch 8, 2 threads
    python benchmarks/bench_eval.py --rows 2 --batch-size 2   # shorter: batch 8 by the probe
    python benchmarks/bench_eval.py --rows 8 --keep /tmp/bench-eval

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "tests" / "fixtures" / "reference"
SHARED_REFERENCE = REPO.parent / "shared" / "reference"
DRUMS = ("kick", "snare", "hihat")
LARSNET_STEMS = ("kick", "snare", "toms", "hihat", "cymbals")
VGGISH_WIDTHS, VGGISH_HIDDEN, VGGISH_DIM = (64, 128, 256, 256, 512, 512), 4096, 128
LARSNET_WIDTHS = (16, 32, 64, 128, 256, 512)
DOSE_STD = 0.02
"""Standard deviation of the random DOSE weights (the usual transformer init; LayerNorms 1/0)."""


# ----------------------------------------------------------------------------- model files
def _shapes(name: str) -> dict[str, list[int]] | None:
    """A key -> shape file from the reference fixtures (or ``../shared/reference``); None if
    neither has it."""
    for folder in (REFERENCE, SHARED_REFERENCE):
        if (folder / name).is_file():
            data = json.loads((folder / name).read_text())
            data = data.get("state_dict", data)
            return {k: list(v["shape"] if isinstance(v, dict) else v) for k, v in data.items()}
    return None


def _check_layout(state: dict[str, torch.Tensor], name: str, what: str) -> str:
    """Raise unless ``state`` has exactly the keys and shapes of the shape file ``name``;
    returns a note for the printout."""
    want = _shapes(name)
    if want is None:
        return f"{what}: {name} not found, layout unchecked"
    have = {k: list(v.shape) for k, v in state.items()}
    if have != want:
        missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
        wrong = [k for k in set(want) & set(have) if want[k] != have[k]]
        raise SystemExit(
            f"bench_eval: {what} does not match {name}: missing {missing[:4]}, "
            f"unexpected {extra[:4]}, wrong shapes {wrong[:4]}"
        )
    return f"{what}: {len(have)} tensors, keys and shapes = {name}"


def _params(state: dict[str, torch.Tensor]) -> float:
    """Millions of floating-point elements in a state dict."""
    return sum(v.numel() for v in state.values() if v.is_floating_point()) / 1e6


def write_dac(path: Path, seed: int) -> tuple[str, float]:
    """The full 44 kHz DAC (released kwargs), random weights, released file format."""
    from dose_model.codec.dac_codec import DacCodec

    codec = DacCodec.random(seed=seed)
    state = codec.model.state_dict()
    note = _check_layout(state, "dac_44khz_state_dict_shapes.json", "DAC 44 kHz")
    codec.save(path)
    return note, _params(state)


def write_dose(path: Path, seed: int) -> tuple[str, float]:
    """A published DOSE Lightning checkpoint of the released size, every key of
    ``dose_official_state_dict_shapes.json`` (unused ones and the causal masks included):
    weights N(0, DOSE_STD), biases 0, LayerNorm weights 1."""
    shapes = _shapes("dose_official_state_dict_shapes.json")
    if shapes is None:
        raise SystemExit("bench_eval: dose_official_state_dict_shapes.json not found")
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        leaf = key.rsplit(".", 2)
        if key.endswith("attn.mask"):
            size = shape[-1]
            state[key] = torch.tril(torch.ones(size, size)).view(shape)
        elif key.endswith(".bias"):
            state[key] = torch.zeros(shape)
        elif leaf[-2].startswith("ln") and leaf[-1] == "weight":
            state[key] = torch.ones(shape)
        else:
            state[key] = torch.randn(shape, generator=gen) * DOSE_STD
    torch.save({"state_dict": state, "epoch": 0, "global_step": 0}, path)
    return f"DOSE: {len(state)} tensors = dose_official_state_dict_shapes.json", _params(state)


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """torch's default initialisers drawing from ``seed``; the global RNG left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def write_vggish(path: Path, seed: int) -> tuple[str, float]:
    """VGGish at the released widths (torchvggish's state-dict layout), torch's default init."""
    from dose_model.fad.vggish import VGGishNetwork

    with _seeded(seed):
        state = VGGishNetwork(VGGISH_WIDTHS, VGGISH_HIDDEN, VGGISH_DIM).state_dict()
    note = _check_layout(state, "vggish_state_dict_shapes.json", "VGGish")
    torch.save(state, path)
    return note, _params(state)


def write_clap(path: Path, seed: int) -> tuple[str, float]:
    """LAION-CLAP HTSAT-tiny, audio branch and projection, in the released checkpoint layout
    (``module.`` keys, the classifier head and the index/mask buffers included). Random
    weights (torch's init; the relative position bias tables N(0, 0.02)); the STFT and mel
    kernels copied from ``clap_narrow.pt``, whose front end has the released shapes."""
    from dose_model.fad.clap import _RENAMED
    from dose_model.fad.htsat import ClapAudioNetwork, HtsatConfig

    config = HtsatConfig(
        n_fft=1024, mel_bins=64, embed_dim=96, depths=(2, 2, 6, 2), num_heads=(4, 8, 16, 32),
        window_size=8, patch_size=4, mlp_ratio=4.0, qkv_bias=True, joint_dim=512,
    )  # fmt: skip
    narrow = torch.load(REFERENCE / "clap_narrow.pt", map_location="cpu", weights_only=True)
    narrow = narrow["state_dict"]
    with _seeded(seed):
        network = ClapAudioNetwork(config)
        head = {
            "audio_branch.tscam_conv.weight": torch.randn(527, 768, 2, 3) * 0.02,
            "audio_branch.tscam_conv.bias": torch.zeros(527),
            "audio_branch.head.weight": torch.randn(527, 527) * 0.02,
            "audio_branch.head.bias": torch.zeros(527),
        }
        with torch.no_grad():
            for name, param in network.named_parameters():
                if name.endswith("relative_position_bias_table"):
                    param.normal_(0.0, 0.02)
    back = {ours: theirs for theirs, ours in _RENAMED.items()}
    state = {}
    for key, value in network.state_dict().items():
        name = back.get(key, key)
        if name in back.values():  # the front end: the real kernels
            value = narrow["module." + name]
        state["module." + name] = value.clone()
    for key, value in network.named_buffers():  # computed buffers the released file stores
        if key.endswith((".attn_mask", ".relative_position_index")):
            state["module." + key] = value.clone()
    state.update({"module." + k: v for k, v in head.items()})
    note = _check_layout(state, "htsat_tiny_state_dict_shapes.json", "CLAP HTSAT-tiny")
    torch.save({"state_dict": state}, path)
    return note, _params({k: v for k, v in state.items() if "tscam" not in k and "head" not in k})


def write_larsnet(folder: Path, seed: int) -> tuple[str, float]:
    """LarsNet's released folder: five U-Nets at the released widths, torch's default init,
    BatchNorm weight 1, bias 0, running mean 0 and variance 1."""
    from dose_model.separate.unet import MaskUNet

    total, note = 0.0, ""
    for i, stem in enumerate(LARSNET_STEMS):
        with _seeded(seed + i):
            state = MaskUNet(LARSNET_WIDTHS, 2048, 2).state_dict()
        note = _check_layout(state, "larsnet_state_dict_shapes.json", "LarsNet U-Net")
        path = folder / stem / f"pretrained_{stem}_unet.pth"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model_state_dict": state, "epoch": 0}, path)
        total += _params(state)
    return note + " (x5)", total


# ----------------------------------------------------------------------------- timing
@dataclass
class Stage:
    """Exclusive seconds and calls of one wrapped stage."""

    seconds: float = 0.0
    calls: int = 0
    each: list[float] = field(default_factory=list)


class Profiler:
    """Wraps functions and methods with ``time.perf_counter``; a stage's time excludes the
    wrapped stages it calls (so the stages add up to at most the whole)."""

    def __init__(self) -> None:
        self.stages: dict[str, Stage] = {}
        self._stack: list[list[float]] = []  # [start, seconds of wrapped children]
        self._undo: list[Callable[[], None]] = []

    def wrap(self, owner: object, name: str, label: str) -> None:
        original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        inner = original.__func__ if isinstance(original, staticmethod | classmethod) else original
        stage = self.stages.setdefault(label, Stage())

        def timed(*args, **kwargs):
            self._stack.append([time.perf_counter(), 0.0])
            try:
                return inner(*args, **kwargs)
            finally:
                start, children = self._stack.pop()
                elapsed = time.perf_counter() - start
                stage.seconds += elapsed - children
                stage.calls += 1
                stage.each.append(elapsed - children)
                if self._stack:
                    self._stack[-1][1] += elapsed

        setattr(owner, name, timed)
        self._undo.append(lambda: setattr(owner, name, original))

    def restore(self) -> None:
        while self._undo:
            self._undo.pop()()


def install(profiler: Profiler) -> None:
    """Wrap every stage of a `dose-eval` run."""
    import dose_model.cli.evaluate as cli
    import dose_model.evaluate.baseline as baseline
    import dose_model.evaluate.split as split
    import dose_model.evaluate.table as table
    import dose_model.fad.frechet as frechet
    from dose_model.codec.dac_codec import DacCodec
    from dose_model.extract.extractor import Extractor
    from dose_model.fad.cache import EmbeddingCache
    from dose_model.fad.clap import ClapEmbedder
    from dose_model.fad.vggish import VGGish
    from dose_model.model.decode import StaticDecoder
    from dose_model.separate.larsnet import LarsNet

    for owner, name, label in (
        (cli, "_systems", "load codec, DOSE models, LarsNet"),
        (table, "load_embedders", "load VGGish, CLAP"),
        (split, "_read_row", "read row audio"),
        (DacCodec, "encode", "DAC encode"),
        (DacCodec, "decode", "DAC decode"),
        (Extractor, "_decoder", "DOSE decoder setup"),
        (StaticDecoder, "prepare", "DOSE decoder setup"),
        (StaticDecoder, "generate", GENERATION),
        (LarsNet, "separate", "LarsNet separation"),
        (split, "baseline_oneshots", "DSP separation (HPSS, band-pass)"),
        (baseline, "pick_oneshots", "picker (LarsNet and DSP)"),
        (split, "mss_distance", "MSS"),
        (VGGish, "embed", "VGGish embedding"),
        (ClapEmbedder, "embed", "CLAP embedding"),
        (EmbeddingCache, "get_or_compute", "embedding cache (lookup, write)"),
        (frechet, "fad", FAD_STAGE),
        (table, "_write_outputs", "table, summary, figure, report"),
        (table.ExampleKeeper, "_write", "report audio files"),
    ):
        profiler.wrap(owner, name, label)


FIXED = (
    "load codec, DOSE models, LarsNet", "load VGGish, CLAP", "DOSE decoder setup",
    "table, summary, figure, report",
)  # fmt: skip
"""Stages paid once per run, whatever the number of rows (the report keeps 3 rows)."""
GENERATION = "DOSE generation"
FAD_STAGE = "FAD cell (FAD, FAD-inf, bootstrap)"


@dataclass
class RunResult:
    """One timed `dose-eval` run."""

    name: str
    seconds: float
    status: int
    stages: dict[str, Stage]
    summary: dict
    last_line: str


def time_eval(name: str, argv: list[str], out: Path) -> RunResult:
    """Run ``dose-eval argv`` in this process with every stage wrapped."""
    from dose_model.cli.evaluate import main

    gc.collect()
    profiler = Profiler()
    install(profiler)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            start = time.perf_counter()
            status = main(argv)
            seconds = time.perf_counter() - start
    finally:
        profiler.restore()
    lines = [ln for ln in printed.getvalue().splitlines() if ln.strip()]
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    gc.collect()
    return RunResult(name, seconds, status, profiler.stages, summary, lines[-1] if lines else "")


def warm_up(dataset: Path) -> float:
    """Pay the first-call costs (imports, librosa's numba compilation, soxr) outside the
    timed runs: the DSP baseline, MSS and a resample on one real mixture. Returns seconds."""
    import librosa

    from dose_model.dataset.audio import load_mono
    from dose_model.evaluate.baseline import baseline_oneshots
    from dose_model.evaluate.metrics import mss_distance

    start = time.perf_counter()
    row = json.loads((dataset / "manifests" / "train.jsonl").read_text().splitlines()[0])
    mixture = load_mono(dataset / row["mixture"], 44100, 176400)
    shots = baseline_oneshots(mixture, 44100, DRUMS, 88576)
    mss_distance(shots["kick"], mixture[:88576], 44100)
    librosa.resample(mixture[:44100], orig_sr=44100, target_sr=48000, res_type="soxr_hq")
    return time.perf_counter() - start


def decoder_probe(checkpoint: Path, batches: tuple[int, ...], lengths=(2, 22)) -> dict:
    """Seconds of a full-length DOSE generation (all ``max_target_len`` rows, greedy, fp32) per
    decoder batch size, extrapolated from two short generations: ``t(L) = a + b * L`` fitted
    to ``L`` in ``lengths`` (``a``: the 353-position prefill, ``b``: one decode step).
    Returns batch -> (a, b, predicted full-length seconds)."""
    from dose_model.model.checkpoints import load_any_model
    from dose_model.model.decode import StaticDecoder

    model = load_any_model(checkpoint, 16, "cpu")
    full = model.config.max_target_len
    gen = torch.Generator().manual_seed(0)
    out = {}
    for batch in dict.fromkeys(batches):
        mix = torch.randint(1, 1025, (batch, model.config.mixture_len, 9), generator=gen)
        times = []
        for length in lengths:
            decoder = StaticDecoder(model, batch, max_len=length, dtype=torch.float32)
            decoder.prepare("greedy")
            start = time.perf_counter()
            decoder.generate(mix, strategy="greedy")
            times.append(time.perf_counter() - start)
        step = (times[1] - times[0]) / (lengths[1] - lengths[0])
        prefill = times[0] - step * lengths[0]
        out[batch] = (prefill, step, prefill + step * full)
    return out


def fad_cell_seconds(n: int, dim: int, bootstrap: int, seed: int = 0) -> float:
    """Seconds of one FAD cell (`dose_model.fad.frechet.fad` with ``bootstrap`` resamples) on
    two random sets of ``n`` rows of ``dim``."""
    import warnings

    from dose_model.fad.frechet import fad

    rng = np.random.default_rng(seed)
    ref, est = rng.standard_normal((2, n, dim)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        fad(ref, est, bootstrap=bootstrap, seed=seed)
        return time.perf_counter() - start


# ----------------------------------------------------------------------------- report
def _git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        return head + (" (uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load average: {:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg())


def print_breakdown(run: RunResult, rows: int) -> None:
    """One line per stage: calls, exclusive seconds, per call, per row, share of the run."""
    print(f"\nbreakdown, {run.name} ({run.seconds:.1f} s, {rows} rows):")
    print(f"  {'stage':<38}{'calls':>6}{'total s':>9}{'s/call':>9}{'s/row':>8}{'share':>7}")
    accounted = 0.0
    for label, st in run.stages.items():
        if not st.calls:
            continue
        accounted += st.seconds
        print(
            f"  {label:<38}{st.calls:>6}{st.seconds:>9.2f}{st.seconds / st.calls:>9.3f}"
            f"{st.seconds / rows:>8.2f}{st.seconds / run.seconds:>7.1%}"
        )
    rest = run.seconds - accounted
    print(f"  {'other (glue, cuts, hashing, CSV)':<38}{'':>6}{rest:>9.2f}{'':>9}"
          f"{rest / rows:>8.2f}{rest / run.seconds:>7.1%}")  # fmt: skip
    gen = run.stages.get("DOSE generation")
    if gen and gen.calls:
        per = ", ".join(f"{s:.1f}" for s in gen.each)
        print(f"  DOSE generation per call (one drum, one batch, in drum order): {per} s")


def project(run: RunResult, rows: int, target: int, generation: float, fad_cells: dict) -> float:
    """Batch-aware seconds for ``target`` rows (see the module text): the one-time stages once,
    the per-row stages times ``target / rows``, ``generation`` seconds of DOSE generation (all
    drums, all batches of ``target`` rows) and ``fad_cells``: metric -> (cells, seconds of one
    cell at ``target`` rows)."""
    stages = {k: v.seconds for k, v in run.stages.items()}
    fixed = sum(stages.get(k, 0.0) for k in FIXED)
    per_row = (
        run.seconds - fixed - stages.get(GENERATION, 0.0) - stages.get(FAD_STAGE, 0.0)
    ) / rows
    fad_then = sum(cells * seconds for cells, seconds in fad_cells.values())
    return fixed + per_row * target + generation + fad_then


# ----------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=3, help="rows scored by each run (default 3)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--bootstrap", type=int, default=100, help="FAD interval resamples (100)")
    p.add_argument("--batch-size", type=int, default=8, help="dose-eval --batch-size (8, CPU)")
    p.add_argument(
        "--target-batch",
        type=int,
        default=8,
        help="decoder batch of the projection (8: dose-eval's CPU default); when it differs "
        "from --batch-size, a short probe of both sizes scales the measured generation",
    )
    p.add_argument("--target", type=int, default=100, help="rows of the projection (100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights (0)")
    p.add_argument("--keep", default=None, metavar="DIR", help="work here and keep the files")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if min(args.rows, args.threads, args.batch_size, args.target_batch) < 1:
        raise SystemExit("bench_eval: --rows, --threads and the batch sizes must be >= 1")
    torch.set_num_threads(args.threads)
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load_before = _load()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-eval-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _bench(args, work, started, load_before)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def _bench(args: argparse.Namespace, work: Path, started: str, load_before: str) -> int:
    from rmod.cli.build import main as rmod_build

    models = work / "models"
    models.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    notes, sizes = [], {}
    files = {"dac": models / "dac_44khz.pth", "vggish": models / "vggish.pth"}
    files["clap"] = models / "clap_htsat_tiny.pt"
    files["larsnet"] = models / "pretrained_larsnet_models"
    for name, writer in (("dac", write_dac), ("vggish", write_vggish), ("clap", write_clap)):
        note, sizes[name] = writer(files[name], args.seed)
        notes.append(note)
    note, sizes["larsnet"] = write_larsnet(files["larsnet"], args.seed)
    notes.append(note)
    files["dose"] = models / "dose.ckpt"  # one file for the three drums (2 GB less to write)
    note, sizes["dose"] = write_dose(files["dose"], args.seed + 1)
    notes.append(note + " (one file, given for kick, snare and hihat)")
    written = time.perf_counter() - t0

    data = work / "rmod"
    t0 = time.perf_counter()
    build_argv = ["--n", str(max(4, args.rows)), "--out", str(data), "--jobs", "1"]
    with contextlib.redirect_stdout(io.StringIO()):
        if rmod_build([*build_argv, "--no-progress"]) not in (0, None):
            raise SystemExit("bench_eval: rmod-build failed")
    built = time.perf_counter() - t0
    warm = warm_up(data)

    common = ["--data", f"rmod={data}", "--split", "train", "--max-rows", str(args.rows)]
    common += ["--codec-weights", str(files["dac"])]
    common += [x for d in DRUMS for x in (f"--{d}", str(files["dose"]))]
    common += ["--strategy", "greedy", "--precision", "fp32", "--device", "cpu"]
    common += ["--batch-size", str(args.batch_size), "--no-progress"]
    extra = ["--larsnet", str(files["larsnet"]), "--bootstrap", str(args.bootstrap)]
    extra += ["--fad", f"vggish={files['vggish']}", "--fad", f"clap={files['clap']}"]
    configs = (("MSS only", []), ("all metrics", extra))
    runs = []
    for i, (name, more) in enumerate(configs):
        out = work / f"out{i}"
        cache = ["--embedding-cache", str(work / f"cache{i}")]
        runs.append(time_eval(name, [*common, *more, *cache, "--out", str(out)], out))
        print(f"bench_eval: {name} done in {runs[-1].seconds:.1f} s", file=sys.stderr, flush=True)
    load_after = _load()

    # FAD at the projection's size: the windows per clip that this run's cells had
    full = runs[-1]
    fad_cells: dict[str, tuple[int, float, int]] = {}
    for metric, dim in {"FAD_vgg": VGGISH_DIM, "FAD_clap": 512}.items():
        cells = [c for c in full.summary.get("cells", []) if c["metric"] == metric]
        if cells:
            n = round(cells[0]["n"] / args.rows * args.target)
            fad_cells[metric] = (len(cells), fad_cell_seconds(n, dim, args.bootstrap), n)
    # DOSE generation at the projection's decoder batch
    probe = {}
    if args.target_batch != args.batch_size:
        probe = decoder_probe(files["dose"], (args.batch_size, args.target_batch))
    scale = probe[args.target_batch][2] / probe[args.batch_size][2] if probe else 1.0
    batches = math.ceil(args.target / args.target_batch)

    print("bench_eval: dose-eval time per row (kick, snare, hi-hat), every system and metric")
    print(f"date {started}; commit {_git_commit()}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {_cpu_name()}, {os.cpu_count()} cores")  # fmt: skip
    print(f"load before: {load_before}")
    print(f"load after:  {load_after}")
    print(
        f"models (random weights, full size, written in {written:.0f} s): DAC 44 kHz "
        f"{sizes['dac']:.1f} M, DOSE 3 x {sizes['dose']:.1f} M (published layout, unused "
        f"tensors included), VGGish {sizes['vggish']:.1f} M, CLAP HTSAT-tiny "
        f"{sizes['clap']:.1f} M, LarsNet 5 x {sizes['larsnet'] / 5:.1f} M"
    )
    for note in notes:
        print(f"  {note}")
    print(
        f"dataset: rmod-build {' '.join(build_argv[:2])} (built-in library, {built:.0f} s), "
        f"split train, {args.rows} rows; warm-up outside timing {warm:.1f} s"
    )
    print(
        f"dose-eval: greedy, fp32, --device cpu, --batch-size {args.batch_size}, DOSE for "
        f"kick/snare/hihat; all metrics = --larsnet (plain masks) --fad vggish --fad clap "
        f"(repeat pad) --bootstrap {args.bootstrap}"
    )
    base = runs[0].seconds
    print(f"\n{'configuration':<14}{'status':>7}{'total s':>9}{'s/row':>8}"
          f"{f'{args.target} rows linear':>18}{f'{args.target} rows batch-aware':>24}"
          f"{'x MSS only':>12}")  # fmt: skip
    for run in runs:
        cells = {k: v[:2] for k, v in fad_cells.items()} if run is full else {}
        gen = run.stages.get(GENERATION)
        call = gen.seconds / gen.calls if gen and gen.calls else 0.0
        generation = len(DRUMS) * batches * call * scale
        projected = project(run, args.rows, args.target, generation, cells)
        print(
            f"{run.name:<14}{run.status:>7}{run.seconds:>9.1f}{run.seconds / args.rows:>8.1f}"
            f"{run.seconds / args.rows * args.target / 60:>14.1f} min"
            f"{projected / 60:>20.1f} min{run.seconds / base:>11.2f}x"
        )
    for run in runs:
        print(f"  {run.name}: {run.last_line}")
    for run in runs:
        print_breakdown(run, args.rows)
    print(
        f"\nFAD per cell at {args.target} rows (random embeddings, --bootstrap {args.bootstrap}):"
    )
    for metric, (cells, seconds, n) in fad_cells.items():
        print(f"  {metric}: {n} rows per set, {seconds:.2f} s per cell, {cells} cells "
              f"-> {cells * seconds:.0f} s")  # fmt: skip
    gen = full.stages.get(GENERATION)
    if gen and gen.calls:
        print(
            f"DOSE generation at {args.target} rows: {len(DRUMS)} drums x {batches} batches of "
            f"{args.target_batch} x {gen.seconds / gen.calls:.1f} s (measured call, batch "
            f"{args.batch_size}) x {scale:.2f} (probe: batch {args.target_batch} / batch "
            f"{args.batch_size}) = {len(DRUMS) * batches * gen.seconds / gen.calls * scale:.0f} s"
        )
    for batch, (prefill, step, total) in probe.items():
        print(
            f"  probe, batch {batch}: prefill {prefill:.1f} s + {step:.2f} s per decode step "
            f"-> {total:.1f} s for a full-length generation"
        )
    return 0 if all(r.status == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
