"""Which build is running: the core compiled with mypyc, or pure Python.

``pip install`` compiles the hot core to C extension modules where it can
(``setup.py``) and records the build in ``trading_engine/build.json``: its
kind and the SHA-256 of each compiled module's source. This module reads
that record once, when the package is first imported and before any core
module is, and decides which modules run:

- the compiled ones, when they were built from the sources beside them;
- the pure-Python sources, when ``TRADING_ENGINE_PURE`` is set in the
  environment (not empty, not ``0``): the same switch that turns
  compilation off at install time picks the pure build at run time;
- the pure-Python sources, with one :class:`RuntimeWarning`, when any
  compiled module's source has changed since the build. In an editable
  install the extension modules sit beside the ``.py`` files and Python
  prefers them, so an edited ``.py`` would otherwise be silently ignored.
  The compiled modules share one library and call each other directly, so
  they are used all together or not at all.

:data:`BUILD` says what was decided; ``trading_engine.compiled``,
``/status`` and the bench report show it. The choice never depends on
timestamps: a checkout that touches files without changing them keeps the
compiled build.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

__all__ = ["BUILD", "PURE_ENV", "BuildInfo", "select_build"]

#: The environment variable that asks for the pure-Python build, at install
#: time (nothing is compiled) and at run time (compiled modules are ignored).
PURE_ENV = "TRADING_ENGINE_PURE"

_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class BuildInfo:
    """The build that runs and why.

    ``kind`` is ``"compiled"`` or ``"pure"``; ``compiled_modules`` the
    modules that run as C extensions (empty for the pure build); ``note``
    says why the pure build runs where a compiled one might have (empty
    otherwise). ``fallback`` is True when the install wanted to compile
    but found no working C compiler: the command line warns about it on
    every start, since pip shows a build's warnings only with ``-v``.
    """

    kind: str
    compiled_modules: tuple[str, ...]
    note: str
    fallback: bool = False

    @property
    def compiled(self) -> bool:
        """True when the core runs compiled."""
        return self.kind == "compiled"

    def as_dict(self) -> dict[str, object]:
        """The build as JSON-ready data (``/status``, bench reports)."""
        return {
            "kind": self.kind,
            "compiled_modules": list(self.compiled_modules),
            "note": self.note,
            "fallback": self.fallback,
        }


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Loads the listed modules from their ``.py`` files, never an extension."""

    def __init__(self, sources: dict[str, Path]) -> None:
        self.sources = sources

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        source = self.sources.get(fullname)
        if source is None:
            return None
        return importlib.util.spec_from_file_location(fullname, source)


def _source_of(module: str, root: Path) -> Path:
    parts = module.split(".")
    return root.joinpath(*parts[1:]).with_suffix(".py")


def _has_extension(source: Path) -> bool:
    return any(
        source.with_suffix(suffix).exists() for suffix in importlib.machinery.EXTENSION_SUFFIXES
    )


def select_build(
    root: Path = _PACKAGE_ROOT,
    environ: dict[str, str] | None = None,
    install: bool = True,
) -> BuildInfo:
    """Decide which build runs, from ``root/build.json`` and the sources.

    With ``install`` (the default, done once at import) a decision for the
    pure build over compiled modules that exist installs an import hook
    that loads the ``.py`` sources instead, and a stale build warns once.
    Never raises: an unreadable record means the pure build.
    """
    env = os.environ if environ is None else environ
    try:
        record = json.loads((root / "build.json").read_text(encoding="utf-8"))
        kind = str(record["build"])
        modules: dict[str, str] = dict(record.get("modules", {}))
        install_note = str(record.get("note", ""))
        fallback = record.get("fallback") is True
    except (OSError, ValueError, KeyError, TypeError):
        return BuildInfo("pure", (), "no build record: not installed with pip")
    if kind != "compiled" or not modules:
        return BuildInfo("pure", (), install_note, fallback)
    sources = {module: _source_of(module, root) for module in modules}
    if not all(_has_extension(path) for path in sources.values()):
        return BuildInfo("pure", (), "the compiled modules are missing")
    note = ""
    if env.get(PURE_ENV, "") not in ("", "0"):
        note = f"{PURE_ENV} is set"
    else:
        changed = [
            module
            for module, digest in sorted(modules.items())
            if sources[module].exists()
            and hashlib.sha256(sources[module].read_bytes()).hexdigest() != digest
        ]
        if changed:
            note = (
                f"compiled modules are older than their sources ({', '.join(changed)} changed);"
                " running the pure-Python build. Rebuild with `pip install -e .`"
            )
            if install:
                warnings.warn(f"trading-engine: {note}", RuntimeWarning, stacklevel=2)
    if not note:
        return BuildInfo("compiled", tuple(sorted(modules)), "")
    if install:
        sys.meta_path.insert(0, _SourceFinder(sources))
    return BuildInfo("pure", (), note)


#: The build this process runs, decided at the package's first import.
BUILD: BuildInfo = select_build()
