"""The DOSE transformer and running it.

- `config`: model and training settings.  `transformer`: the decoder-only network.
- `losses`: the full-length and onset losses.  `checkpoints`: checkpoint formats (ours and the released one).
- `generate`: the eager reference sampler.  `decode`: the static-cache decoding engine.
"""
