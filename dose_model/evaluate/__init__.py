"""`dose-eval`: scoring models on RMOD splits.

- `split`: one split scored per drum.  `metrics`: MSS and the Fréchet distance.
- `baseline`: the separation baseline.
"""
