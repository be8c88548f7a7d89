"""`dose-train`: cache, then train.

- `pipeline`: from a manifest to a run (cache, then train).  `loop`: the training loop.
- `state`: where a run starts (fresh or resumed).  `log`: `metrics.csv`.
- `distributed`: the torchrun environment and signals.
- `batches`: batches from the token cache.  `loader`: their order, a function of seed and step.
"""
