"""Instructions per update under valgrind's callgrind: noise-free build comparison.

Wall time on a shared two-core machine swings by tens of percent; the
number of instructions a workload executes does not. Each workload runs
under ``valgrind --tool=callgrind`` twice, with a short and a long stream
of the same seeded updates; the difference of the two totals divided by
the difference in updates is the cost of one update, start-up and imports
cancelled out, and so is making the stream (the same difference for a run
that only makes it is subtracted). Builds as in ``benchmarks/builds.py``: compiled, pure
(``TRADING_ENGINE_PURE=1``) and optionally a git revision.

Workloads (the same streams as ``benchmarks/book.py``):
``handle``: ``BookBuilder.handle`` (decode + validate + apply) and a best
bid/ask read; ``book``: ``OrderBook.apply`` and a best bid/ask read of
decoded updates; ``dispatch``: four sync strategies, each running the full
pre-trade risk check, per update (``benchmarks/dispatch.py``).

Run: ``python -m benchmarks.instructions [--revision REV]`` (needs valgrind;
a few minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks._common import machine
from benchmarks.builds import ROOT, _export

WORKLOADS = ("handle", "book", "dispatch")


#: The child's program: the build's own ``benchmarks/book.py`` streams.
_CHILD = """
import gc
gc.disable()  # a collection's cost depends on when it falls: keep counts exact
from benchmarks.book import builder_runner, make_stream, run_engine_book
snapshot, frames, decoded = make_stream({updates}, 20261129)
if {name!r} == "handle":
    builder_runner(snapshot, frames)()
elif {name!r} == "book":
    run_engine_book(decoded)
"""

#: Four sync strategies, each with a full risk check, per update
#: (``benchmarks/dispatch.py``); its set-up does not grow with the count.
_DISPATCH = """
import gc
gc.disable()
import benchmarks.dispatch as bench
bench._entry, bench._risk = bench.setup()
dispatcher = bench.make_dispatcher(bench.SyncStrategy, 4)
bench.time_dispatcher(dispatcher, bench._entry, {updates})
"""


def instructions(name: str, updates: int, build: str, tree: Path | None) -> int:
    """Total instructions (callgrind's Ir) of one child run."""
    env = dict(os.environ)
    env.pop("TRADING_ENGINE_PURE", None)
    cwd = ROOT
    if build == "pure":
        env["TRADING_ENGINE_PURE"] = "1"
    elif build != "compiled" and tree is not None:
        cwd = tree
        env["PYTHONPATH"] = str(tree)
    child = _DISPATCH if name == "dispatch" else _CHILD
    code = child.format(name=name, updates=updates)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "callgrind.out")
        result = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             sys.executable, "-c", code],
            cwd=cwd, env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
    match = re.search(r"Collected\s*:\s*(\d+)", result.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count in callgrind's output: {result.stderr[-500:]}")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", type=int, default=2_000)
    parser.add_argument("--long", type=int, default=22_000)
    parser.add_argument("--revision", help="also count the project at this git revision")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--workload", choices=WORKLOADS, action="append")
    args = parser.parse_args()
    workloads = args.workload or list(WORKLOADS)

    builds = ["compiled", "pure"]
    report: dict[str, object] = {"benchmark": "instructions", "machine": machine()}
    per_update: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tree = None
        if args.revision:
            tree = Path(tmp)
            _export(args.revision, tree)
            builds.append(f"revision {args.revision}")
        span = args.long - args.short
        streamed = any(name != "dispatch" for name in workloads)
        stream = {
            build: instructions("stream", args.long, build, tree)
            - instructions("stream", args.short, build, tree)
            if streamed
            else 0
            for build in builds
        }
        for name in workloads:
            per_update[name] = {}
            for build in builds:
                short = instructions(name, args.short, build, tree)
                long = instructions(name, args.long, build, tree)
                made = 0 if name == "dispatch" else stream[build]
                per_update[name][build] = (long - short - made) / span
                print(f"{name:8s} {build:22s} {per_update[name][build]:12,.0f} instructions/update")
    report["instructions_per_update"] = per_update
    for name, row in per_update.items():
        print(f"{name}: pure / compiled {row['pure'] / row['compiled']:.2f}x", end="")
        for build in builds[2:]:
            print(f", {build} / compiled {row[build] / row['compiled']:.2f}x", end="")
        print()
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
