"""The recorded OKX ELON-USDT session: its checksums, and the README's backtest over it."""

from __future__ import annotations

import re
import shlex
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import orjson
import pytest

from trading_engine.backtest.analytics import analyze
from trading_engine.backtest.result import BacktestResult
from trading_engine.backtest.runner import run_backtest
from trading_engine.commands.cli import main
from trading_engine.config import load_config
from trading_engine.core.feeds import BookFrame
from trading_engine.io.venue_capture import read_venue_capture, replay
from trading_engine.venues.okx.dialect import OkxDialect

ROOT = Path(__file__).resolve().parents[2]
SESSION = ROOT / "tests" / "data" / "venues" / "okx" / "elon_usdt_session.capture"
CONFIG = ROOT / "config" / "backtest-okx-elon.toml"

#: The snapshot's cut (README in tests/data/venues/okx): its 50th ask and 50th bid.
LAST_ASK = Decimal("0.00000078581")
LAST_BID = Decimal("0.00000070556")

#: USDT per (tick x lot): tick 1e-11 USDT, lot 1 ELON.
UNIT = Fraction(1, 10**11)
LOTS = 1_000_000


def test_every_recorded_checksum_holds_on_the_cut_snapshot() -> None:
    dialect = OkxDialect(["ELON-USDT"])
    bids: dict[Decimal, str] = {}
    asks: dict[Decimal, str] = {}
    messages = 0
    for event, actions in zip(
        read_venue_capture(SESSION), replay(dialect, read_venue_capture(SESSION)), strict=True
    ):
        if event.kind != "ws":
            continue
        messages += 1
        for action in actions:
            assert isinstance(action, BookFrame), action
            if action.snapshot:
                bids.clear()
                asks.clear()
            for side, levels in ((bids, action.bids), (asks, action.asks)):
                for price, size in levels:
                    if Decimal(size):
                        side[Decimal(price)] = size
                    else:
                        side.pop(Decimal(price), None)
        if messages == 1:
            assert (len(bids), len(asks)) == (50, 50)
        # The 25 levels a side the checksum covers never reach past the cut: the
        # levels of the whole book below it could not have changed a checksum.
        assert sorted(bids, reverse=True)[24] > LAST_BID
        assert sorted(asks)[24] < LAST_ASK
    # Every message is the snapshot or a book update of ELON-USDT, each one checked
    # against OKX's own checksum, none missing and none failed.
    assert messages == 172
    assert dialect.errors == {}
    assert (dialect.checksums_verified, dialect.checksums_absent) == (172, 0)


def run() -> BacktestResult:
    return run_backtest(load_config(CONFIG, environ={}), [SESSION])


def test_the_example_backtest_fills_as_computed_by_hand() -> None:
    result = run()
    assert result.meta.frames == 172
    assert result.meta.skipped == {}
    assert (result.meta.first_ns, result.meta.last_ns) == (
        1646003668387504800,
        1646003670188973000,
    )
    fills = [(f.ts_ns, f.side, f.price, f.quantity, f.liquidity, f.fee) for f in result.fills]
    # The first order: decided on the message received at 1646003668.390364 (the
    # top 3 bids 2,868,296,985 ELON against 706,290,442 asked: +0.60), a buy of
    # 1,000,000 IOC at that book's best ask, 0.00000074525. It reaches the venue
    # 300 us later, after the ask of 0.00000074523 received at 1646003668.390656:
    # it fills there, taker. Fee: 0.001 x 0.00000074523 x 1,000,000 USDT.
    first_ns = 1646003668390364000 + 300_000
    assert fills[0] == (first_ns, "buy", 74523, LOTS, "taker", 74523 * LOTS // 1000)
    assert Fraction(fills[0][5]) * UNIT == Fraction("0.00074523")
    # Then two more buys, a sell at the bid (the bids lean the other way) and a buy;
    # each fee 0.1% of its notional.
    assert [(side, price) for _, side, price, *_ in fills] == [
        ("buy", 74523),
        ("buy", 74508),
        ("buy", 74503),
        ("sell", 74349),
        ("buy", 74492),
    ]
    assert all(fee * 1000 == price * lots for _, _, price, lots, _, fee in fills)
    assert result.end_positions == {("taker", "ELON-USDT"): 3 * LOTS}

    [row] = [r for r in analyze(result).pnl if r.strategy and r.symbol]
    fees = Fraction(sum(price for _, _, price, *_ in fills) * LOTS, 1000) * UNIT
    assert row.fees == fees == Fraction("0.00372375")
    # FIFO: the sell at 74349 closes the first buy at 74523.
    assert row.realized_gross == (74349 - 74523) * LOTS * UNIT == Fraction("-0.00174")
    assert row.realized == row.realized_gross - fees
    # The rest, bought at 74508, 74503 and 74492, marked at the last recorded mid: bid
    # 0.00000074444 (received 1646003670.013749), ask 0.00000074541 (the same message).
    mid = Fraction(74444 + 74541, 2)
    assert row.unrealized == (3 * mid - (74508 + 74503 + 74492)) * LOTS * UNIT
    assert row.unrealized == Fraction("-0.000255")


def test_the_example_backtest_is_deterministic() -> None:
    def stable(result: BacktestResult) -> bytes:
        data = orjson.loads(result.to_json())
        data["meta"].pop("wall_s")
        return orjson.dumps(data)

    assert stable(run()) == stable(run())


def test_the_readme_walk_through_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Backtest\n", 1)[1].split("\n## ", 1)[0]
    commands: list[str] = []
    for block in re.findall(r"```\n(.*?)```", section, flags=re.S):
        lines = iter(block.splitlines())
        for line in lines:
            heredoc = re.fullmatch(r"cat > /tmp/(\S+) <<'(\w+)'", line)
            if heredoc:
                # The files the walk-through writes, written where the test runs them.
                body = []
                for text in lines:
                    if text == heredoc[2]:
                        break
                    body.append(text)
                (tmp_path / heredoc[1]).write_text("\n".join(body) + "\n", encoding="utf-8")
            elif line.startswith("trading-engine backtest "):
                commands.append(line)
    assert any("elon_usdt_session.capture" in line for line in commands)
    monkeypatch.chdir(ROOT)
    for line in commands:
        # Paths under /tmp are the test's own directory.
        argv = [
            str(tmp_path / arg[len("/tmp/") :]) if arg.startswith("/tmp/") else arg
            for arg in shlex.split(line)[1:]
        ]
        assert main(argv) == 0, line
    result = BacktestResult.from_json((tmp_path / "elon.json").read_bytes())
    assert len(result.fills) == 5
    assert (tmp_path / "elon-report" / "report.json").exists()


def test_order_requests_refused_before_sending_are_counted_and_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trading_engine.commands.cli import main

    # The example without its [risk] table: the default quantity limits refuse every order.
    text = CONFIG.read_text()
    start = text.index("[risk]")
    end = text.find("\n[", start + 1)
    config = tmp_path / "no-risk.toml"
    config.write_text(text[:start] + (text[end + 1 :] if end >= 0 else ""))
    out = tmp_path / "result.json"
    assert main(["backtest", "--config", str(config), str(SESSION), "--json", str(out)]) == 0
    result = BacktestResult.from_json(out.read_bytes())
    assert result.orders == []
    assert result.fills == []
    refused = result.meta.denied["taker"]["max_quantity"]
    assert refused > 0
    assert set(result.meta.denied) == {"taker"}
    said = capsys.readouterr().out
    assert f"taker: order requests refused before sending: max_quantity {refused}" in said
