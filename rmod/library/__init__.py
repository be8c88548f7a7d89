"""Sample libraries: the sounds an example is made of.

- `catalog`: the library manifest and `Library` (ids per class and split, entries, audio).
- `source`: `LibraryIndex`, `LibrarySource`: what drawing and rendering read of a library.
- `hashing`: content hashes, ids and the family split.
- `indexing`: `rmod-library index` (a folder of audio files into a library).
- `families`, `leaks`: families of related sounds; near-duplicates across splits.
- `builtin/`: the built-in library, generated from the soundfonts on the machine.
"""
