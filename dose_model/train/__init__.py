"""`dose-train`: cache, then train.

- `options`: `TrainOptions`, what a run is asked to do (filled once from argparse).
- `pipeline`: from a manifest to a run (cache, then train).  `loop`: the training loop.
- `state`: where a run starts (fresh or resumed).  `log`: `metrics.csv`.
- `distributed`: the torchrun environment and signals.
- `batches`: batches from the token cache.  `loader`: their order, a function of seed and step.
"""
