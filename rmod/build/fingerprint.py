"""The engine fingerprint: which code decides the bytes of a build.

:func:`engine_fingerprint` hashes the source text of an explicit list of modules
(:data:`RENDERING_MODULES`) and the versions of the audio packages they use. ``build.json``
records it: a resume with changed code is refused, and a worker whose code differs from the
planner's refuses to render.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
from pathlib import Path

#: The modules whose code decides the bytes of a build, given its recipe, library content
#: and seed: :func:`engine_fingerprint` hashes exactly these, the shared package's modules
#: that rendering uses included. A test renders an example and fails if it imported an
#: ``rmod`` or ``rmod_dose_common`` module that is neither here nor in
#: :data:`NOT_RENDERING_MODULES`.
RENDERING_MODULES = (
    "rmod", "rmod.audio", "rmod.records", "rmod_dose_common.records", "rmod_dose_common.pcm",
    "rmod.recipe.spec", "rmod.recipe.checks", "rmod.recipe.distributions",
    "rmod.library.catalog", "rmod.library.hashing",
    "rmod.example.draw", "rmod.example.render", "rmod.example.pattern", "rmod.example.groove",
    "rmod.example.tracks", "rmod.example.mixing", "rmod.example.master",
    "rmod.example.sample_store", "rmod.example.store_folder", "rmod.example.pitch",
    "rmod.build.manifest", "rmod.build.worker", "rmod_dose_common.audio",
    "rmod.build.tar_layout", "rmod_dose_common.tar_shards",
)  # fmt: skip
#: ``rmod`` and ``rmod_dose_common`` modules a build imports that do not decide its bytes,
#: and why.
NOT_RENDERING_MODULES = {
    "rmod.library.builtin": "makes the built-in library, whose content the library fingerprint covers",
    **{
        f"rmod.library.builtin.{name}": "as rmod.library.builtin"
        for name in (
            "drums",
            "export",
            "fonts",
            "generate",
            "loops",
            "phrases",
            "sf2",
            "synth",
            "voice",
        )
    },
    **{
        f"rmod.{stage}": "a stage package's index: its modules are listed one by one"
        for stage in ("recipe", "library", "example", "build")
    },
    "rmod.errors": "the base classes of rmod's errors",
    "rmod.limits": "size limits and file-type checks of untrusted input: it refuses, never changes, what is read",
    "rmod.library.families": "groups a library's files into families for its splits (library content)",
    "rmod.library.leaks": "reports near-duplicates across a library's splits",
    "rmod.build.preflight": "checks a build's numbers and library before any work",
    "rmod.build.fingerprint": "hashes the rendering modules' source; decides no bytes",
    "rmod.build.task": "the task record sent to a worker and its result; data, not rendering",
    "rmod.build.upkeep": "process upkeep (lease, parent watch, allocator); changes no result",
    "rmod.build.shards": "where a shard's files go and how it commits, not what they hold",
    "rmod.build.sink": "the token sink protocol and its lookup: it receives rendered audio",
    "rmod_dose_common": "the shared package's index: its modules are listed one by one",
    "rmod_dose_common.fileio": "writes files durably and hashes them; decides no bytes",
}
RENDERING_PACKAGES = (
    "numpy", "scipy", "soxr", "pedalboard", "soundfile", "miditoolkit"
)  # fmt: skip


@functools.lru_cache(maxsize=1)
def engine_fingerprint() -> str:
    """SHA-256 of the code that decides the bytes of a build: the rendering modules of
    ``rmod`` (source text) and the versions of the audio packages they use.

    Recorded in ``build.json``: resuming with changed code is refused, and a worker
    whose code differs from the planner's refuses to render (mixed renders would break
    byte-identity silently).
    """
    h = hashlib.sha256()
    for name in RENDERING_MODULES:
        spec = importlib.util.find_spec(name)
        # our own modules, importable from their source files
        assert spec is not None and spec.origin is not None
        origin = spec.origin
        h.update(name.encode() + b"\0" + Path(origin).read_bytes() + b"\0")
    for name in RENDERING_PACKAGES:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "absent"
        h.update(f"{name}=={version}\n".encode())
    return h.hexdigest()
