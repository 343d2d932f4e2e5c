"""The compiled and pure builds: which one runs, stale modules, install fallbacks."""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import trading_engine
from trading_engine.lowlevel.build import BUILD, PURE_ENV, select_build

PROJECT = Path(__file__).resolve().parents[2]
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]
CORE = ["trading_engine.core.book", "trading_engine.core.builder"]


def test_the_running_build_is_the_loaded_one() -> None:
    import trading_engine.core.book
    import trading_engine.core.protocol

    expected = (
        importlib.machinery.ExtensionFileLoader
        if trading_engine.compiled
        else importlib.machinery.SourceFileLoader
    )
    for module in (trading_engine.core.book, trading_engine.core.protocol):
        assert type(module.__loader__) is expected
    assert trading_engine.compiled is BUILD.compiled
    assert BUILD.compiled == bool(BUILD.compiled_modules)


def test_pure_environment_variable_selects_the_pure_build() -> None:
    # A core test suite run with TRADING_ENGINE_PURE=1 must really be pure.
    if os.environ.get(PURE_ENV, "") not in ("", "0"):
        assert not trading_engine.compiled


def fake_package(tmp_path: Path, extensions: bool = True) -> Path:
    """A package root with two core sources, a compiled build record and fake extensions."""
    root = tmp_path / "trading_engine"
    (root / "core").mkdir(parents=True)
    digests = {}
    for module in CORE:
        source = root / "core" / (module.rsplit(".", 1)[1] + ".py")
        source.write_text(f"# {module}\n")
        digests[module] = hashlib.sha256(source.read_bytes()).hexdigest()
        if extensions:
            source.with_suffix(SUFFIX).write_bytes(b"")
    record = {"build": "compiled", "modules": digests, "note": ""}
    (root / "build.json").write_text(json.dumps(record))
    return root


def test_compiled_build_from_matching_sources(tmp_path: Path) -> None:
    build = select_build(fake_package(tmp_path), environ={}, install=False)
    assert build.kind == "compiled"
    assert build.compiled_modules == tuple(CORE)
    assert build.note == ""


def test_environment_variable_picks_pure_at_run_time(tmp_path: Path) -> None:
    root = fake_package(tmp_path)
    build = select_build(root, environ={PURE_ENV: "1"}, install=False)
    assert (build.kind, build.note) == ("pure", f"{PURE_ENV} is set")
    assert select_build(root, environ={PURE_ENV: "0"}, install=False).compiled


def test_a_changed_source_makes_the_whole_build_pure(tmp_path: Path) -> None:
    root = fake_package(tmp_path)
    (root / "core" / "builder.py").write_text("# edited\n")
    build = select_build(root, environ={}, install=False)
    assert build.kind == "pure"
    assert build.compiled_modules == ()
    assert "trading_engine.core.builder changed" in build.note
    assert "pip install -e ." in build.note


def test_a_touched_but_unchanged_source_keeps_the_compiled_build(tmp_path: Path) -> None:
    root = fake_package(tmp_path)
    source = root / "core" / "book.py"
    os.utime(source, (source.stat().st_atime + 100, source.stat().st_mtime + 100))
    assert select_build(root, environ={}, install=False).compiled


def test_missing_record_or_extensions_mean_pure(tmp_path: Path) -> None:
    assert select_build(tmp_path, environ={}, install=False).note.startswith("no build record")
    root = fake_package(tmp_path / "x", extensions=False)
    assert select_build(root, environ={}, install=False).note == "the compiled modules are missing"
    (root / "build.json").write_text('{"build": "pure", "modules": {}, "note": "why"}')
    assert select_build(root, environ={}, install=False).note == "why"


def _copy_project(tmp_path: Path) -> Path:
    """The project's sources, without build products, in a fresh folder."""
    target = tmp_path / "project"
    ignore = shutil.ignore_patterns("*.so", "__pycache__", "build.json", "*.egg-info")
    for name in ("trading_engine", "strategies"):
        shutil.copytree(PROJECT / name, target / name, ignore=ignore)
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(PROJECT / name, target / name)
    return target


@pytest.mark.skipif(not trading_engine.compiled, reason="needs the compiled build installed")
def test_stale_compiled_modules_run_as_pure_with_one_warning(tmp_path: Path) -> None:
    # A copy of the installed package (extensions included) with one source edited.
    package = Path(trading_engine.__file__).parent
    copy = tmp_path / "trading_engine"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    book = copy / "core" / "book.py"
    book.write_text(book.read_text() + "\nEDITED = True\n")
    code = (
        "import importlib.machinery, trading_engine, trading_engine.core.book as b\n"
        "print(trading_engine.compiled, type(b.__loader__).__name__, b.EDITED)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    env.pop(PURE_ENV, None)
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "SourceFileLoader", "True"]
    warnings = [line for line in result.stderr.splitlines() if "RuntimeWarning" in line]
    assert len(warnings) == 1
    assert "trading_engine.core.book changed" in warnings[0]


def _build_wheel(project: Path, tmp_path: Path, env: dict[str, str]) -> tuple[Path, str]:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path / "dist"), str(project)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    return wheel, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "warned"),
    [
        (PURE_ENV, "1", False),
        ("CC", "/bin/false", True),  # a compiler that fails
        ("PATH", "/nonexistent", True),  # no compiler at all
    ],
)
def test_install_builds_pure_on_request_or_without_a_compiler(
    tmp_path: Path, variable: str, value: str, warned: bool
) -> None:
    project = _copy_project(tmp_path)
    env = {key: text for key, text in os.environ.items() if key != PURE_ENV}
    env[variable] = value
    wheel, output = _build_wheel(project, tmp_path, env)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        record = json.loads(archive.read("trading_engine/build.json"))
        archive.extractall(tmp_path / "installed")
    # The installed package, run from the command line: pip hides a build's
    # warnings, so the command line repeats the fallback's on every start.
    run_env = {**os.environ, "PYTHONPATH": str(tmp_path / "installed")}
    run_env.pop(PURE_ENV, None)
    started = subprocess.run(
        [sys.executable, "-m", "trading_engine", "--version"],
        env=run_env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    assert not [name for name in names if name.endswith(SUFFIX)]
    assert "trading_engine/core/book.py" in names
    assert record["build"] == "pure"
    warnings = [line for line in output.splitlines() if "WARNING: trading-engine" in line]
    started_warnings = [line for line in started.stderr.splitlines() if "WARNING" in line]
    if warned:
        assert len(warnings) == 1, output[-2000:]
        assert "no working C compiler" in warnings[0]
        assert "pure-Python build" in warnings[0]
        assert "no working C compiler" in record["note"]
        assert record["fallback"] is True
        assert len(started_warnings) == 1
        assert "no working C compiler" in started_warnings[0]
    else:
        assert warnings == []
        assert record["note"] == f"{PURE_ENV} was set at install time"
        assert started_warnings == []


def test_the_compiled_modules_type_check_as_the_isolated_build_does(tmp_path: Path) -> None:
    # pip builds in an isolated environment that holds setuptools and mypy
    # only: there mypyc sees orjson, httpx and cryptography as Any, and
    # --strict refuses, for instance, a str function returning one of their
    # values. A development venv, which has them, would not show it; an
    # interpreter without them does. The options are setup.py's.
    setup_py = (PROJECT / "setup.py").read_text()
    compiled = re.findall(r'^    "(trading_engine/[\w/]+\.py)",$', setup_py, re.MULTILINE)
    assert "trading_engine/core/book.py" in compiled, "setup.py's COMPILED list moved"
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    result = subprocess.run(
        [
            sys.executable, "-m", "mypy", "--python-executable", str(bare / "bin" / "python"),
            "--config-file=", "--strict", "--ignore-missing-imports", "--follow-imports=silent",
            "--cache-dir", str(tmp_path / "cache"), *compiled,
        ],
        cwd=PROJECT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
