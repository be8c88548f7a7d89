"""The token cache: a dataset encoded once with DAC.

- `tokenize`: `dose-tokenize` (`TokenizeOptions`), encoding a dataset into token shards.
- `index`: the cache's `index.json`, its checksums and `--verify`.
- `ranks`: `dose-tokenize` on many processes or hosts (`--rank`, torchrun) and its merge.
- `sink`: the `dac` token sink of `rmod-build --tokens` (a cache with no audio in between).
"""
