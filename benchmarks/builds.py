"""Run one benchmark against the compiled and the pure build, interleaved.

Both builds come from the same install: a process started with
``TRADING_ENGINE_PURE=1`` loads the ``.py`` sources instead of the compiled
modules (``trading_engine.lowlevel.build``). Each round runs the benchmark
once per build, each in a fresh process, in alternating order, so that this
shared machine's noise hits both builds alike; the figures are medians over
rounds, and the ratio is the median of the per-round ratios.

``--revision REV`` adds a third build: the project as it was at git
revision ``REV`` (exported with ``git archive``, run from source), to
measure a change against what came before in the same run.

Run: ``python -m benchmarks.builds book --rounds 5 -- --updates 200000``
(arguments after ``--`` go to the benchmark; it runs with ``--runs 1``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path
from typing import Any

from benchmarks._common import machine

ROOT = Path(__file__).resolve().parent.parent


def _figures(report: dict[str, Any]) -> tuple[str, dict[str, float]]:
    """The report's per-variant medians (the one dict of summaries it holds)."""
    for key, value in report.items():
        if (
            isinstance(value, dict)
            and value
            and all(isinstance(stats, dict) and "median" in stats for stats in value.values())
        ):
            return key, {name: float(stats["median"]) for name, stats in value.items()}
    raise ValueError(f"no per-variant figures in the report: {sorted(report)}")


def _export(revision: str, target: Path) -> None:
    archive = subprocess.run(
        ["git", "archive", revision], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")


def run_once(benchmark: str, build: str, extra: list[str], tree: Path | None) -> dict[str, Any]:
    """One run of ``benchmarks.<benchmark>`` in a fresh process; its JSON report."""
    env = dict(os.environ)
    env.pop("TRADING_ENGINE_PURE", None)
    cwd = ROOT
    if build == "pure":
        env["TRADING_ENGINE_PURE"] = "1"
    elif build != "compiled" and tree is not None:
        cwd = tree
        env["PYTHONPATH"] = str(tree)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "report.json")
        command = [sys.executable, "-m", f"benchmarks.{benchmark}", "--runs", "1"]
        subprocess.run([*command, "--json", str(out), *extra], cwd=cwd, env=env, check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        report: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    build_seen = report.get("machine", {}).get("build")
    if build in ("compiled", "pure") and build_seen != build:
        raise RuntimeError(f"asked for the {build} build, the benchmark ran {build_seen}")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("benchmark", help="a module of benchmarks/: book, ingest, dispatch ...")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--revision", help="also run the project at this git revision")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    extra = argv[split + 1 :]  # after "--": the benchmark's own arguments

    builds = ["compiled", "pure"]
    with tempfile.TemporaryDirectory() as tmp:
        tree = None
        if args.revision:
            tree = Path(tmp)
            _export(args.revision, tree)
            builds.append(f"revision {args.revision}")
        unit = ""
        results: dict[str, dict[str, list[float]]] = {build: {} for build in builds}
        for round_number in range(args.rounds):
            order = builds if round_number % 2 == 0 else builds[::-1]
            for build in order:
                unit, figures = _figures(run_once(args.benchmark, build, extra, tree))
                for name, value in figures.items():
                    results[build].setdefault(name, []).append(value)
            print(f"round {round_number + 1}/{args.rounds} done", file=sys.stderr)

    variants = list(dict.fromkeys(name for build in builds for name in results[build]))
    report: dict[str, Any] = {
        "benchmark": args.benchmark,
        "unit": unit,
        "rounds": args.rounds,
        "arguments": extra,
        "machine": machine(),
        "results": {},
    }
    print(f"benchmarks.{args.benchmark} {' '.join(extra)}: {unit}, medians of {args.rounds} rounds")
    header = "".join(f"{build:>22s}" for build in builds)
    print(f"{'variant':58s}{header}{'pure / compiled':>17s}")
    for name in variants:
        row: dict[str, Any] = {}
        for build in builds:
            values = results[build].get(name)
            row[build] = statistics.median(values) if values else None
        pure, compiled = results["pure"].get(name), results["compiled"].get(name)
        row["pure_over_compiled"] = (
            statistics.median(p / c for p, c in zip(pure, compiled, strict=True))
            if pure and compiled
            else None
        )
        row["runs"] = {build: results[build].get(name) for build in builds}
        report["results"][name] = row
        cells = "".join(
            f"{row[build]:>22,.1f}" if row[build] is not None else f"{'-':>22s}" for build in builds
        )
        ratio = row["pure_over_compiled"]
        ratio_cell = f"{ratio:>16.2f}x" if ratio is not None else f"{'-':>17s}"
        print(f"{name[:58]:58s}{cells}{ratio_cell}")
    print(json.dumps(report["machine"]))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
