"""The bench report: per-round percentiles summarized by their median, and its text form."""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
from collections.abc import Callable
from typing import Any

from ...lowlevel.build import BUILD
from .stats import percentiles

__all__ = ["LOADED_PER_CORE", "build_report", "load", "load_note", "machine", "print_report"]

#: The 1-minute load average per core above which ``bench`` says its figures
#: are not comparable: other work then shares the cores the three processes need.
LOADED_PER_CORE = 0.5


def load(
    threshold: float = LOADED_PER_CORE,
    getloadavg: Callable[[], tuple[float, float, float]] | None = None,
    cores: int | None = None,
) -> dict[str, Any]:
    """The machine's load before the bench starts.

    ``{"load_1m", "cores", "per_core", "threshold", "loaded"}``; the load
    fields are None where the platform has no load average (``loaded``
    False then). ``loaded``: the 1-minute load per core is above
    ``threshold``.
    """
    count = cores if cores is not None else os.cpu_count() or 1
    try:
        one_minute = (getloadavg or os.getloadavg)()[0]
    except OSError:
        return {"load_1m": None, "cores": count, "per_core": None, "threshold": threshold,
                "loaded": False}  # fmt: skip
    per_core = one_minute / count
    return {
        "load_1m": round(one_minute, 2),
        "cores": count,
        "per_core": round(per_core, 2),
        "threshold": threshold,
        "loaded": per_core > threshold,
    }


def load_note(found: dict[str, Any]) -> str | None:
    """One line saying the machine was loaded and the figures are not comparable, or None."""
    if not found.get("loaded"):
        return None
    return (
        f"load average {found['load_1m']:.2f} over {found['cores']} core(s) "
        f"({found['per_core']:.2f} per core, above {found['threshold']:g}) before the bench "
        "started: other work shares the CPUs, so these figures are not comparable with a "
        "run on an idle machine"
    )


def machine() -> dict[str, Any]:
    """Python version and machine description for the record."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": model,
        "cores": os.cpu_count(),
        "build": BUILD.kind,
        "build_note": BUILD.note,
    }


def _median_of(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def _summary(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per quantile, the median over the rounds of each round's figure."""
    return {name: _median_of(runs, name) for name in ("p50", "p90", "p99", "p99.9", "max")}


def _engine_section(rounds: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """One engine run's figures over the rounds: wire to wire, its stages, throughput."""
    runs = [r[kind] for r in rounds]
    stage_names = sorted({name for run in runs for name in run["stages_us"]})
    throughputs = [run["throughput_msg_per_s"] for run in runs if run["throughput_msg_per_s"]]
    return {
        "wire_to_wire_us": _summary([percentiles(run["wire_to_wire_us"]) for run in runs]),
        "orders_per_round": [run["orders"] for run in runs],
        "stages_us": {
            name: _summary([percentiles(run["stages_us"][name]) for run in runs])
            for name in stage_names
            if all(run["stages_us"].get(name) for run in runs)
        },
        "throughput_msg_per_s": statistics.median(throughputs) if throughputs else None,
    }


def _added(second: dict[str, Any], first: dict[str, Any]) -> dict[str, float]:
    """What ``second`` adds to ``first`` at p50 and p99 (us): wire to wire and the engine's own."""
    added = {}
    for name, (a, b) in {
        "wire_to_wire": (second["wire_to_wire_us"], first["wire_to_wire_us"]),
        "tick_to_trade": (
            second["stages_us"].get("tick_to_trade"),
            first["stages_us"].get("tick_to_trade"),
        ),
    }.items():
        if a is not None and b is not None:
            added[f"{name}_p50"] = a["p50"] - b["p50"]
            added[f"{name}_p99"] = a["p99"] - b["p99"]
    return added


def build_report(
    args: argparse.Namespace,
    rounds: list[dict[str, Any]],
    dialects: tuple[str, ...] = ("own",),
) -> dict[str, Any]:
    """The report of ``rounds`` (each a dict of engine runs by kind, as ``run_bench`` makes).

    ``engine`` is the run on ``dialects[0]``; each later dialect's is
    under its name (``binance``), with what it adds to the first
    dialect's (``added_us``: wire to wire and the engine's tick to order
    written, p50 and p99). Microseconds throughout.
    """

    def per_round(kind: str, key: str = "wire_to_wire_us") -> list[dict[str, float]]:
        return [percentiles(r[kind][key]) for r in rounds if kind in r]

    summary = _summary
    report: dict[str, Any] = {
        "machine": machine(),
        "settings": {
            "loop": args.loop,
            "gateway": args.gateway,
            "dialects": list(dialects),
            "busy_poll_s": args.busy_poll_s,
            "pinned": bool(getattr(args, "pin", False)),
            "background_rate": args.background_rate,
            "ticks": args.ticks,
            "interval_ms": args.interval_ms,
            "burst": args.burst,
            "rounds": args.rounds,
            "baseline_ticks": args.baseline_ticks if args.baseline else None,
            "baseline_interval_ms": args.baseline_interval_ms if args.baseline else None,
        },
        "engine": {"dialect": dialects[0], **_engine_section(rounds, "engine")},
        "note": "medians over rounds of each round's percentile; microseconds",
    }
    samples = {"engine": [x for r in rounds for x in r["engine"]["wire_to_wire_us"]]}
    for dialect in dialects[1:]:
        section = _engine_section(rounds, f"engine_{dialect}")
        section["added_us"] = _added(section, report["engine"])
        report[dialect] = section
        samples[dialect] = [x for r in rounds for x in r[f"engine_{dialect}"]["wire_to_wire_us"]]
    if any("engine_metrics_off" in r for r in rounds):
        off = per_round("engine_metrics_off")
        internal_on = summary(
            [percentiles(r["engine"]["stages_us"]["tick_to_trade"]) for r in rounds]
        )
        internal_off = summary(
            [percentiles(r["engine_metrics_off"]["stages_us"]["tick_to_trade"]) for r in rounds]
        )
        report["metrics_off"] = {
            "wire_to_wire_us": summary(off),
            "tick_to_trade_us": internal_off,
            "cost_pct_internal_p50": 100 * (internal_on["p50"] / internal_off["p50"] - 1),
            "cost_pct_internal_p99": 100 * (internal_on["p99"] / internal_off["p99"] - 1),
            "cost_pct_wire_p50": 100
            * (report["engine"]["wire_to_wire_us"]["p50"] / summary(off)["p50"] - 1),
        }
    if any("engine_journal_off" in r for r in rounds):
        internal_on = summary(
            [percentiles(r["engine"]["stages_us"]["tick_to_trade"]) for r in rounds]
        )
        internal_off = summary(
            [percentiles(r["engine_journal_off"]["stages_us"]["tick_to_trade"]) for r in rounds]
        )
        off_throughputs = [
            r["engine_journal_off"]["throughput_msg_per_s"]
            for r in rounds
            if r["engine_journal_off"]["throughput_msg_per_s"]
        ]
        report["journal_off"] = {
            "wire_to_wire_us": summary(per_round("engine_journal_off")),
            "tick_to_trade_us": internal_off,
            "cost_us_internal_p50": internal_on["p50"] - internal_off["p50"],
            "cost_us_internal_p99": internal_on["p99"] - internal_off["p99"],
            "throughput_msg_per_s": statistics.median(off_throughputs) if off_throughputs else None,
        }
    if any("baseline" in r for r in rounds):
        base = summary(per_round("baseline"))
        ours = report["engine"]["wire_to_wire_us"]
        report["baseline"] = {
            "wire_to_wire_us": base,
            "orders_per_round": [r["baseline"]["orders"] for r in rounds],
            "ratio_p50": base["p50"] / ours["p50"],
            "ratio_p99": base["p99"] / ours["p99"],
        }
        samples["baseline"] = [x for r in rounds for x in r["baseline"]["wire_to_wire_us"]]
    report["_samples"] = samples
    return report


def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    s = report["settings"]
    note = load_note(report.get("load", {}))
    if note is not None:
        print(f"WARNING: {note}\n")
    print(
        f"trading-engine bench: Python {m['python']} ({m['implementation']}), {m['cpu']}, "
        f"{m['cores']} cores, {m['build']} build\n"
        f"loop {s['loop']} (busy_poll_s {s['busy_poll_s']}"
        f"{', engine pinned to its own CPU' if s.get('pinned') else ''}), gateway "
        f"{s['gateway']}, order API {' and '.join(s.get('dialects', ['own']))}, "
        f"{s['ticks']} ticks every {s['interval_ms']} ms with "
        f"{s['background_rate']:g} background updates/s, {s['rounds']} rounds\n"
        f"({report['note']})\n"
    )
    header = f"{'':44s}{'p50':>10s}{'p90':>10s}{'p99':>10s}{'p99.9':>10s}{'max':>10s}"
    print(header)

    def row(name: str, values: dict[str, float]) -> None:
        cells = "".join(f"{values[k]:10.1f}" for k in ("p50", "p90", "p99", "p99.9", "max"))
        print(f"{name:44s}{cells}")

    engine = report["engine"]
    row("wire to wire (tick sent -> order in)", engine["wire_to_wire_us"])
    labels = {
        "feed_handle": "  feed: decode+apply (1 in 16)",
        "strategy": "  strategy evaluation",
        "risk": "  risk check",
        "tick_to_trade": "  engine: bytes in -> order written",
        "roundtrip": "  order round trip",
    }
    for name, values in engine["stages_us"].items():
        row(labels.get(name, name), values)
    for dialect in s.get("dialects", [])[1:]:
        other = report[dialect]
        row(f"{dialect}: wire to wire", other["wire_to_wire_us"])
        for name, values in other["stages_us"].items():
            row(f"{dialect}: {labels.get(name, name).strip()}", values)
        added = other["added_us"]
        print(
            f"{dialect} over {engine['dialect']}: wire to wire {added['wire_to_wire_p50']:+.1f} us "
            f"at p50, {added['wire_to_wire_p99']:+.1f} us at p99"
            + (
                f"; bytes in -> written {added['tick_to_trade_p50']:+.1f} us at p50, "
                f"{added['tick_to_trade_p99']:+.1f} us at p99"
                if "tick_to_trade_p50" in added
                else ""
            )
        )
    if "metrics_off" in report:
        off = report["metrics_off"]
        row("metrics off: wire to wire", off["wire_to_wire_us"])
        row("metrics off: bytes in -> written", off["tick_to_trade_us"])
        print(
            f"metrics cost: {off['cost_pct_internal_p50']:+.1f}% at p50, "
            f"{off['cost_pct_internal_p99']:+.1f}% at p99 of the engine's tick-to-trade"
        )
    if "journal_off" in report:
        off = report["journal_off"]
        row("journal off: wire to wire", off["wire_to_wire_us"])
        row("journal off: bytes in -> written", off["tick_to_trade_us"])
        print(
            f"journal cost: {off['cost_us_internal_p50']:+.1f} us at p50, "
            f"{off['cost_us_internal_p99']:+.1f} us at p99 of the engine's tick-to-trade"
        )
        if off["throughput_msg_per_s"]:
            print(f"throughput without the journal: {off['throughput_msg_per_s']:,.0f} updates/s")
    if "baseline" in report:
        base = report["baseline"]
        row(f"naive baseline (1 tick/{s['baseline_interval_ms']:g} ms)", base["wire_to_wire_us"])
        print(
            f"baseline / engine: {base['ratio_p50']:.1f}x at p50, {base['ratio_p99']:.1f}x at p99"
        )
    if engine["throughput_msg_per_s"]:
        print(f"throughput: {engine['throughput_msg_per_s']:,.0f} updates/s applied (burst)")
    print(f"orders per round: {engine['orders_per_round']} of {s['ticks']} ticks")
    for dialect in s.get("dialects", [])[1:]:
        other = report[dialect]
        if other["throughput_msg_per_s"]:
            print(f"{dialect}: throughput {other['throughput_msg_per_s']:,.0f} updates/s applied")
        print(f"{dialect}: orders per round: {other['orders_per_round']} of {s['ticks']} ticks")
