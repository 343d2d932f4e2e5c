"""Build: the hot core compiled to C with mypyc, or the pure-Python build.

``pip install .`` and ``pip install -e .`` compile the modules listed in
``COMPILED`` with mypyc (shipped with mypy) when a C compiler and the
Python headers are present, and fall back to the pure-Python build with one
warning when they are not. ``TRADING_ENGINE_PURE=1`` at install time builds
the pure package on purpose.

Either way the build writes ``trading_engine/build.json``: which build it is
and, for a compiled build, the SHA-256 of each compiled module's source.
``trading_engine.lowlevel.build`` reads it at import time and refuses
compiled modules whose source has changed since they were built (see the
README's Development section).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import sysconfig
import tempfile
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
PACKAGE = ROOT / "trading_engine"
BUILD_INFO = PACKAGE / "build.json"
#: The shared library mypyc builds for the group, inside the package so that
#: editable installs find it beside the modules it serves.
GROUP = "trading_engine.core._native"

#: Modules compiled to C. ``core/strategy.py`` stays interpreted: strategies
#: subclass ``Strategy`` and ``StrategyContext`` from ordinary Python.
#: ``sim/matching.py``'s ``MatchOrder`` allows interpreted subclasses (the
#: exchange simulator's orders).
COMPILED = [
    "trading_engine/core/errors.py",
    "trading_engine/core/instruments.py",
    "trading_engine/core/protocol.py",
    "trading_engine/core/book.py",
    "trading_engine/core/builder.py",
    "trading_engine/core/orders.py",
    "trading_engine/core/positions.py",
    "trading_engine/core/fees.py",
    "trading_engine/core/reports.py",
    "trading_engine/core/ledger.py",
    "trading_engine/core/risk.py",
    "trading_engine/core/breaker.py",
    "trading_engine/core/sharding.py",
    "trading_engine/venues/binance/signing.py",
    "trading_engine/venues/binance/filters.py",
    "trading_engine/venues/binance/orders.py",
    "trading_engine/venues/binance/order_api.py",
    "trading_engine/backtest/events.py",
    "trading_engine/backtest/tardis.py",
    "trading_engine/backtest/runner.py",
    "trading_engine/engine/dispatch.py",
    "trading_engine/sim/venue.py",
    "trading_engine/sim/matching.py",
    "trading_engine/lowlevel/histogram.py",
    "trading_engine/core/view.py",
    "trading_engine/engine/context.py",
]


def _module_name(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def _warn(message: str) -> None:
    # pip shows a build backend's output only with -v, so the record in
    # build.json carries the warning too: the command line repeats it on
    # every start, and /status and `trading_engine.compiled` show the build.
    print(f"WARNING: trading-engine: {message}", file=sys.stderr)


def _compiler_problem() -> str | None:
    """Why no extension can be compiled here, or None when one can."""
    from setuptools._distutils.ccompiler import new_compiler
    from setuptools._distutils.sysconfig import customize_compiler

    compiler = new_compiler()
    customize_compiler(compiler)
    include = sysconfig.get_paths()["include"]
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp, "probe.c")
        source.write_text("#include <Python.h>\nint probe(void) { return PY_MAJOR_VERSION; }\n")
        try:
            compiler.compile([str(source)], output_dir=tmp, include_dirs=[include])
        except Exception as exc:  # any failure to compile means no compiled build
            command = getattr(compiler, "compiler_so", None) or ["cc"]
            detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
            if "Command '[" in detail:  # the whole command line: name the compiler only
                detail = "exit status " + detail.rsplit(" ", 1)[-1].rstrip(".")
            return f"{command[0]} failed: {detail[:120]}"
    return None


def _remove_stale_extensions() -> None:
    """Delete compiled modules an earlier in-place build left in the tree."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    for path in PACKAGE.rglob(f"*{suffix}"):
        path.unlink()


def _write_build_info(
    build: str, modules: dict[str, str], note: str = "", fallback: bool = False
) -> None:
    info = {"build": build, "modules": modules, "note": note, "fallback": fallback}
    BUILD_INFO.write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")


def _source_hashes() -> dict[str, str]:
    return {
        _module_name(path): hashlib.sha256((ROOT / path).read_bytes()).hexdigest()
        for path in COMPILED
    }


#: setup.py runs once per build step; these only read metadata and build nothing.
_METADATA_COMMANDS = frozenset({"egg_info", "dist_info", "sdist"})


def _metadata_only(argv: list[str]) -> bool:
    """True when the first command (setuptools runs one per step) builds nothing."""
    commands = [arg for arg in argv if not arg.startswith("-")]
    return bool(commands) and commands[0] in _METADATA_COMMANDS


def _ext_modules() -> list[object]:
    if _metadata_only(sys.argv[1:]):
        return []
    if os.environ.get("TRADING_ENGINE_PURE", "") not in ("", "0"):
        _remove_stale_extensions()
        _write_build_info("pure", {}, "TRADING_ENGINE_PURE was set at install time")
        return []
    problem = _compiler_problem()
    if problem is not None:
        _remove_stale_extensions()
        note = f"no working C compiler ({problem}); installed the pure-Python build"
        _warn(note)
        _write_build_info("pure", {}, note, fallback=True)
        return []
    from mypyc.build import mypycify

    # The type check of record is `mypy --strict` with pyproject.toml's
    # configuration; the build only needs types, not the test extra's
    # plugins, so it reads no configuration file.
    options = [
        "--config-file=",
        "--strict",
        "--ignore-missing-imports",
        "--follow-imports=silent",
    ]
    extensions = mypycify(
        [*options, *COMPILED],
        opt_level="3",
        group_name=GROUP,
        target_dir=str(ROOT / "build" / "mypyc"),
    )
    _write_build_info("compiled", _source_hashes())
    return list(extensions)


os.chdir(ROOT)
setup(ext_modules=_ext_modules())
