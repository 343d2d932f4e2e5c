"""Summarise a py-spy raw profile: where the samples of one thread went.

``py-spy record -r 500 -f raw -o profile.txt -- python -m benchmarks.ingest
--count 200000 --runs 1`` writes one line per distinct stack, frames
separated by ``;`` and the sample count last. This prints, for the samples
whose stack passes through ``--within`` (a function name), the share of
samples per leaf function ("self") and per function anywhere on the stack
("total"), highest first. Compiled (mypyc) functions show up under their
own names when py-spy runs with ``--native``; without it their time is
charged to the interpreted function that called them.

Run: ``python -m benchmarks.pyspy_summary profile.txt --within one_run``.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

_FRAME = re.compile(r"^(?P<name>.+?) \((?P<where>[^()]*)\)$")


def _name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    where = match.group("where").split(":")[0]
    return f"{match.group('name')} ({where.rsplit('/', 2)[-2:][-1] if where else '?'})"


def summarise(lines: list[str], within: str | None) -> tuple[int, Counter[str], Counter[str]]:
    """Total samples, self samples per function, total samples per function."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    count = 0
    for line in lines:
        stack, _, number = line.rstrip("\n").rpartition(" ")
        if not stack or not number.isdigit():
            continue
        frames = [_name(frame) for frame in stack.split(";") if frame]
        if within is not None:
            starts = [i for i, frame in enumerate(frames) if frame.startswith(within + " ")]
            if not starts:
                continue
            frames = frames[starts[0] :]
        samples = int(number)
        count += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            total[frame] += samples
    return count, own, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile")
    parser.add_argument("--within", help="only stacks through this function name")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    with open(args.profile, encoding="utf-8") as handle:
        count, own, total = summarise(handle.readlines(), args.within)
    print(f"{count} samples" + (f" within {args.within}" if args.within else ""))
    print(f"{'self %':>7s} {'total %':>8s}  function")
    for name, samples in own.most_common(args.top):
        print(f"{100 * samples / count:7.1f} {100 * total[name] / count:8.1f}  {name}")
    print("\nhighest totals:")
    for name, samples in total.most_common(args.top):
        print(f"{100 * own[name] / count:7.1f} {100 * samples / count:8.1f}  {name}")


if __name__ == "__main__":
    main()
