"""bf16 vs fp32 greedy token agreement of the static decode engine, on a trained tiny model.

Random weights say little about bf16: their logits are flat and their argmax is a coin toss
between near-equal values. This script trains a tiny DOSE first (CPU, about a minute), so the
distributions are as peaked as a trained model's, then compares greedy generations on
held-out mixtures:

1. data: ``--examples`` synthetic mixtures (decaying tone + noise hits: one of ``--sounds``
   one-shots of 6 to ``--frames`` frames hit twice, plus a fresh distractor, at random
   onsets in 4 s) encoded with a small
   random-weight DAC (hop 512, 9 x 1024 codes, as the tests use); the last ``--held-out``
   are never trained on;
2. training: `dose_model.train.loop.train` (fp32, on the CPU) for ``--steps`` updates;
3. generation on the held-out mixtures, greedy, all ``max_len`` rows (no early stop):
   eager fp32 (`dose_model.model.generate.generate`, the reference), static fp32 and static bf16
   (`dose_model.model.decode.StaticDecoder`).

Printed per pair: token agreement (equal tokens / all tokens), rows equal in all 9
codebooks, whole sequences equal, the mean first step at which they differ (``max_len`` when
they never do), and the largest difference in mean token log-probability. Same seed, same
figures (CPU, one thread).

    python benchmarks/bf16_agreement.py               # ~1-2 min on one CPU core
    python benchmarks/bf16_agreement.py --steps 100   # quicker, a less trained model
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import numpy as np
import torch

from dose_model.codec.dac_codec import DacCodec
from dose_model.codec.tokens import mixture_sequence, target_sequence
from dose_model.model.config import ModelConfig, TrainConfig
from dose_model.model.decode import StaticDecoder
from dose_model.model.generate import Generation, generate
from dose_model.train.loop import train
from dose_model.train.options import TrainOptions

SR = 44100
CODEC_KWARGS = {"encoder_dim": 1, "decoder_dim": 16}  # tests/dose_fixtures.TINY_CODEC_KWARGS


def _hit(rng: np.random.Generator, samples: int) -> np.ndarray:
    """A decaying tone + noise burst (a stand-in drum hit), float32 [samples]."""
    t = np.arange(samples) / SR
    env = np.exp(-t * rng.uniform(6.0, 40.0))
    tone = np.sin(2 * np.pi * rng.uniform(50.0, 3000.0) * t)
    return (0.8 * env * (0.7 * tone + 0.3 * rng.standard_normal(samples))).astype(np.float32)


def make_examples(
    n: int, frames: int, seed: int, sounds: int = 6
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """n (mixture tokens [353, 9], target tokens [F + 10, 9]) pairs from synthetic audio: the
    target is one of ``sounds`` one-shots (a small drum library), hit twice in the mixture
    next to a fresh distractor sound, at random onsets."""
    rng = np.random.default_rng(seed)
    codec = DacCodec.random(CODEC_KWARGS, seed=seed)
    mix_len, hop = 4 * SR, codec.hop_length
    library = [_hit(rng, int(rng.integers(6, frames + 1)) * hop) for _ in range(sounds)]
    mixes, shots = [], []
    for _ in range(n):
        shot = library[int(rng.integers(0, sounds))]
        other = _hit(rng, frames * hop)  # a fresh sound the model must ignore
        mix = np.zeros(mix_len, dtype=np.float32)
        for src in (shot, shot, other):
            onset = int(rng.integers(0, mix_len - src.size))
            mix[onset : onset + src.size] += src
        mixes.append(mix)
        shots.append(shot)
    mix_codes = codec.encode(torch.from_numpy(np.stack(mixes))[:, None])
    out = []
    for b, shot in enumerate(shots):
        codes = codec.encode(torch.from_numpy(shot)[None, None])[0]
        out.append((mixture_sequence(mix_codes[b]), target_sequence(codes)))
    return out


def compare(a: Generation, b: Generation) -> dict[str, float]:
    """Agreement of two greedy generations of the same mixtures (same shape, no early stop)."""
    equal = a.tokens == b.tokens  # [B, N, K]
    rows = equal.all(dim=-1)  # [B, N]
    first = torch.where(rows.all(-1), rows.shape[1], (~rows).float().argmax(-1))
    return {
        "token_agreement": float(equal.float().mean()),
        "row_agreement": float(rows.float().mean()),
        "sequences_equal": float(rows.all(-1).float().mean()),
        "mean_first_diff_row": float(first.float().mean()),
        "max_logprob_diff": float((a.mean_log_prob - b.mean_log_prob).abs().max()),
    }


def trained_model(args: argparse.Namespace, data: list, out: str):
    cfg = ModelConfig(
        num_layers=2,
        num_heads=2,
        d_model=args.d_model,
        dropout=0.0,
        max_target_len=args.frames + 10,
    )
    tcfg = TrainConfig(
        lr=3e-3,
        weight_decay=0.0,
        warmup_steps=10,
        max_steps=args.steps,
        batch_size=8,
        target_frames=args.frames,
        eval_every=args.steps,
        log_every=args.steps,
        save_every=args.steps,
        seed=args.seed,
    )
    train(data, None, TrainOptions(out, cfg, tcfg, device="cpu", precision="fp32", progress=False))
    from dose_model.model.checkpoints import load_model

    return load_model(f"{out}/last.ckpt").eval()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--examples", type=int, default=48)
    p.add_argument("--held-out", type=int, default=16)
    p.add_argument("--frames", type=int, default=16, help="longest one-shot, in code frames")
    p.add_argument("--sounds", type=int, default=6, help="one-shots the targets come from")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--d-model", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    data = make_examples(args.examples, args.frames, args.seed, args.sounds)
    train_set, held = data[: -args.held_out], data[-args.held_out :]
    with tempfile.TemporaryDirectory(prefix="bf16-agreement-") as out:
        model = trained_model(args, train_set, out)
    mix = torch.stack([m for m, _ in held])
    n = mix.shape[0]
    eager = generate(model, mix, stop_on_end=False)
    runs = {
        "static fp32": StaticDecoder(model, n).generate(mix, stop_on_end=False),
        "static bf16": StaticDecoder(model, n, dtype=torch.bfloat16).generate(
            mix, stop_on_end=False
        ),
    }
    nonzero = float((eager.tokens[:, 1:] != 0).float().mean())
    truth = torch.zeros_like(eager.tokens)
    for b, (_, target) in enumerate(held):
        truth[b, : target.shape[0]] = target
    correct = float((eager.tokens == truth).float().mean())
    print(
        f"tiny DOSE (2 layers, d_model {args.d_model}), {len(train_set)} training examples, "
        f"{args.steps} steps, CPU; {n} held-out mixtures x {eager.tokens.shape[1]} rows x 9; "
        f"eager fp32 tokens non-zero: {nonzero:.1%}, distinct: {eager.tokens.unique().numel()}, "
        f"mean log-prob {float(eager.mean_log_prob.mean()):.3f}, equal to the true target: "
        f"{correct:.1%}"
    )
    pairs = [
        ("static fp32 vs eager fp32", runs["static fp32"], eager),
        ("static bf16 vs eager fp32", runs["static bf16"], eager),
        ("static bf16 vs static fp32", runs["static bf16"], runs["static fp32"]),
    ]
    print(f"{'pair':28} tokens   rows     seqs     1st diff  |dlogp|")
    for name, a, b in pairs:
        m = compare(a, b)
        print(
            f"{name:28} {m['token_agreement']:7.2%}  {m['row_agreement']:7.2%}  "
            f"{m['sequences_equal']:7.2%}  {m['mean_first_diff_row']:8.1f}  "
            f"{m['max_logprob_diff']:.4f}"
        )
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
