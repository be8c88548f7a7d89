"""The token cache: a dataset encoded once with DAC.

- `tokenize`: `dose-tokenize` (`TokenizeOptions`), encoding a dataset into token shards.
- `index`: the cache's `index.json`, its checksums and `--verify`.
"""
