"""The strategy classes ``check-config`` can point a user to.

A ``class`` written as a bare class name (``ThresholdTaker``) is neither
``module:Class`` nor an entry point: ``check-config`` lists the strategy
classes it finds, spelled the way ``class`` wants them. It looks in the
shipped ``strategies`` package and in the ``.py`` files of the
configuration file's directory, reading the source (``ast``) rather than
importing it, so that checking a configuration never runs a module's
code. A class counts when it derives from ``Strategy`` (by that name, or
``something.Strategy``) or from another class found this way in the same
file.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import os
from importlib.metadata import entry_points
from pathlib import Path

from ..core.strategy import ENTRY_POINT_GROUP

__all__ = ["bare_class_hint", "find_strategy_classes"]


def _strategy_classes(source: Path) -> list[str]:
    """Names of the strategy classes defined at the top level of ``source`` ([] if unreadable)."""
    try:
        tree = ast.parse(source.read_text(encoding="utf-8"), str(source))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return []
    found: list[str] = []
    known = {"Strategy"}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        for base in node.bases:
            name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", None)
            if name in known:
                found.append(node.name)
                known.add(node.name)
                break
    return found


def _module_prefix(folder: Path, cwd: Path) -> str | None:
    """The dotted module prefix of ``folder`` seen from ``cwd`` ("" for cwd), or None."""
    try:
        relative = folder.resolve().relative_to(cwd.resolve())
    except ValueError:
        return None
    parts = [part for part in relative.parts if part]
    if not all(part.isidentifier() for part in parts):
        return None
    return ".".join(parts)


def find_strategy_classes(config_dir: Path | None = None, cwd: Path | None = None) -> list[str]:
    """Every strategy class found, as ``module:Class`` (entry points as ``name (entry point)``).

    Order: the shipped ``strategies`` package, the entry points of the
    ``trading_engine.strategies`` group, then the configuration's
    directory. A class in a directory that is not under ``cwd`` is spelled
    with its file's module name and ``(run from DIR)``: the engine imports
    ``module`` from the directory it runs in.
    """
    here = Path(os.getcwd()) if cwd is None else cwd
    spelled: list[str] = []
    spec = importlib.util.find_spec("strategies")
    shipped = (
        [Path(p) for p in spec.submodule_search_locations]
        if spec is not None and spec.submodule_search_locations
        else []
    )
    for folder in shipped:
        for source in sorted(folder.glob("*.py")):
            if source.stem.startswith("_"):
                continue
            spelled.extend(f"strategies.{source.stem}:{c}" for c in _strategy_classes(source))
    spelled.extend(
        f"{name} (entry point)"
        for name in sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    )
    if config_dir is not None and config_dir.resolve() not in [p.resolve() for p in shipped]:
        prefix = _module_prefix(config_dir, here)
        for source in sorted(config_dir.glob("*.py")):
            if not source.stem.isidentifier():
                continue
            for name in _strategy_classes(source):
                if prefix is None:
                    spelled.append(f"{source.stem}:{name} (run from {config_dir})")
                else:
                    module = f"{prefix}.{source.stem}" if prefix else source.stem
                    spelled.append(f"{module}:{name}")
    return list(dict.fromkeys(spelled))


def bare_class_hint(bare: str, found: list[str]) -> str:
    """What to append to the problem of a bare ``class = "Name"``: the closest
    strategy found first (``did you mean``), then every one found."""
    if not found:
        return (
            "; no strategy classes found in the strategies package or the configuration's "
            "directory: write class as module:Class"
        )

    def class_name(spelling: str) -> str:
        bare_spelling = spelling.partition(" ")[0]
        return (bare_spelling.partition(":")[2] or bare_spelling).lower()

    names = [class_name(item) for item in found]
    close = difflib.get_close_matches(bare.lower(), names, n=1, cutoff=0.6)
    best = found[names.index(close[0])] if close else None
    listed = ", ".join(found)
    if best is None:
        return f"; strategy classes found: {listed}"
    return f"; did you mean `{best.partition(' ')[0]}`? (strategy classes found: {listed})"
