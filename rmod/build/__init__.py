"""A whole build (`rmod-build`): planned, locked, resumed, run on loky or dask.

- `plan`, `preflight`: everything loaded and checked before any work; `build.json`.
- `run`: the build's lock, resume and final manifests.  `backends`: loky or dask.
- `worker`: one shard's examples, rendered and written.  `task`: what a worker is sent and returns.
- `upkeep`: the build's lease, dying with the build, the allocator.  `shards`: the shard commit protocol.
- `tar_layout`: `--layout tar`, one WebDataset tar (and its index) per shard.
- `fingerprint`: which code decides the bytes (the engine fingerprint).
- `manifest`: manifest rows and `build.json`, the format `dose_model` reads.
- `sink`: the token sink protocol of `--tokens` (found by entry point, never imported).
"""
