"""Looking at what was built.

- `verify`: `rmod-verify`, a dataset checked file by file.  `tar_check`: every byte of a tar build's tars.
- `stats`, `plots`: `rmod-stats`, statistics against the recipe and their figures.
- `quality`: the high-band share and drum audibility of a mix.
- `overview`: one example's figure.  `example_folder`: one example as a folder (`rmod-render-one`).
"""
