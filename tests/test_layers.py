"""The package tree is the architecture: imports run one way.

Layers, bottom to top (``docs/design.md`` draws them)::

    core < lowlevel < config < io < venues < engine < sim < backtest < commands, testing

A module may import from its own layer and from the layers below it,
never from above. ``core`` imports nothing of the package outside
``core`` and never imports asyncio. The package's ``__init__`` (the
public API) and ``__main__`` sit on top. Every import is checked, the
ones inside functions included, since a lazy import is still an arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import trading_engine
import trading_engine.testing

PACKAGE_ROOT = Path(trading_engine.__file__).parent

#: Layer of each top-level part of the package, bottom (0) to top.
LAYERS: dict[str, int] = {
    "core": 0,
    "lowlevel": 1,
    "config": 2,
    "io": 3,
    "venues": 4,
    "engine": 5,
    "sim": 6,
    "backtest": 7,
    "commands": 8,
    "testing": 8,
    "__init__": 9,
    "__main__": 9,
}

#: Modules that ``core`` must never import (it is synchronous and pure).
CORE_FORBIDDEN = ("asyncio", "uvloop", "aiohttp", "httpx", "prometheus_client")


def _module_name(path: Path, root: Path, package: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([package, *parts])


def imports_of(source: str, module: str, is_package: bool) -> list[str]:
    """Every module ``source`` imports, relative imports resolved to absolute names."""
    tree = ast.parse(source)
    base = module.split(".") if is_package else module.split(".")[:-1]
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)]
                target = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                target = node.module or ""
            found.append(target)
            # ``from pkg import module`` imports a module too.
            found.extend(f"{target}.{alias.name}" for alias in node.names)
    return found


def layer_of(name: str, package: str) -> int | None:
    """The layer of an absolute module name inside ``package``, else None."""
    parts = name.split(".")
    if parts[0] != package or len(parts) == 1:
        return None
    return LAYERS.get(parts[1])


def violations(source: str, module: str, is_package: bool, package: str) -> list[str]:
    """The wrong-way imports of one module, as readable lines."""
    own = layer_of(module, package) if module != package else LAYERS["__init__"]
    assert own is not None, f"{module} is in no layer: add its folder to LAYERS"
    in_core = own == LAYERS["core"]
    found = []
    for target in imports_of(source, module, is_package):
        top = target.split(".")[0]
        if in_core and top in CORE_FORBIDDEN:
            found.append(f"{module} imports {target} (core never imports {top})")
        layer = layer_of(target, package)
        if layer is None:
            continue
        if layer > own:
            found.append(f"{module} imports {target}, a layer above it")
        elif in_core and layer != own:
            found.append(f"{module} imports {target} (core imports only core)")
    return found


def _modules() -> list[Path]:
    return sorted(PACKAGE_ROOT.rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE_ROOT)))
def test_imports_run_one_way(path: Path) -> None:
    module = _module_name(path, PACKAGE_ROOT, "trading_engine")
    found = violations(path.read_text(), module, path.name == "__init__.py", "trading_engine")
    assert found == []


def test_every_folder_has_a_layer() -> None:
    tops = {p.relative_to(PACKAGE_ROOT).parts[0].removesuffix(".py") for p in _modules()}
    assert tops <= set(LAYERS)


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        # The check itself can fail: synthetic modules with bad arrows.
        (
            "trading_engine.core.book",
            "import asyncio\n",
            ["trading_engine.core.book imports asyncio (core never imports asyncio)"],
        ),
        (
            "trading_engine.core.risk",
            "def f():\n    from ..config import RiskConfig\n",
            [
                "trading_engine.core.risk imports trading_engine.config, a layer above it",
                "trading_engine.core.risk imports trading_engine.config.RiskConfig,"
                " a layer above it",
            ],
        ),
        (
            "trading_engine.io.admin",
            "from ..engine.engine import Engine\n",
            [
                "trading_engine.io.admin imports trading_engine.engine.engine, a layer above it",
                "trading_engine.io.admin imports trading_engine.engine.engine.Engine,"
                " a layer above it",
            ],
        ),
        (
            "trading_engine.engine.engine",
            "from trading_engine.sim import venue\n",
            [
                "trading_engine.engine.engine imports trading_engine.sim, a layer above it",
                "trading_engine.engine.engine imports trading_engine.sim.venue, a layer above it",
            ],
        ),
        ("trading_engine.engine.engine", "from ..core.book import OrderBook\n", []),
        ("trading_engine.commands.cli", "from ..sim import exchange_sim\n", []),
    ],
)
def test_the_check_catches_wrong_way_imports(module: str, source: str, expected: list[str]) -> None:
    assert violations(source, module, False, "trading_engine") == expected


STRATEGIES_ROOT = PACKAGE_ROOT.parent / "strategies"


@pytest.mark.parametrize("path", sorted(STRATEGIES_ROOT.glob("*.py")), ids=lambda p: p.name)
def test_bundled_strategies_use_only_public_names(path: Path) -> None:
    imported = imports_of(path.read_text(), f"strategies.{path.stem}", False)
    inner = [name for name in imported if name.startswith("trading_engine.")]
    public = {f"trading_engine.{name}" for name in trading_engine.__all__}
    # The test kit is a public module of its own (its tests use it).
    public |= {"trading_engine.testing"} | {
        f"trading_engine.testing.{name}" for name in trading_engine.testing.__all__
    }
    assert [name for name in inner if name not in public] == []
