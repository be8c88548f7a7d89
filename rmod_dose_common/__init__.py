"""What `rmod` and `dose_model` both need, in one copy; imports neither of them.

- `cli`: how every command-line tool ends (exit statuses, `--debug`, the help formatter).
- `fileio`: atomic writes with ``fsync`` of the file and its folder, a folder published by
  one durable rename, file hashes.
- `records`: the converter between records (dataclasses) and plain values, with the
  caller's error class.
- `pcm`: 16-bit quantization (`to_pcm16`) and its float read-back, for audio files and tokens.
- `audio`: the one bounded audio reader (regular files only, header limits, block decoding).
- `tar_shards`: the tar shard format of ``rmod-build --layout tar`` (headers, the sidecar index,
  ``TAR#MEMBER`` row paths, reading one member by offset).

``tests/integration/test_plumbing.py`` fails when either package grows its own copy again.
"""
