"""Seeded random flows: the engine and the reference must report identically, step by step."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pytest

from shard.engine.types import Command, OrderStatus, RejectCode, Report, SymbolSpec
from tests.shard.engine.conftest import engine_factory
from tests.shard.engine.flows import DEFAULT_SYMBOLS, random_flow
from tests.shard.engine.invariants import EngineLike, book_state
from tests.shard.engine.reference import ReferenceEngine

SEEDS = range(1, 13)
N_COMMANDS = 3_000
COMPARE_BOOKS_EVERY = 100


def _mismatch(i: int, cmd: Command, got: Report, want: Report) -> str:
    fields = [
        f"  {name}: engine={a!r} reference={b!r}"
        for name, a, b in zip(Report._fields, got, want, strict=True)
        if a != b
    ]
    return "\n".join(
        [
            f"first mismatch at command #{i}: {cmd!r}",
            f"engine:    {got!r}",
            f"reference: {want!r}",
            "differing fields:",
            *fields,
        ]
    )


def _fresh_pair(specs: Sequence[SymbolSpec]) -> tuple[EngineLike, EngineLike]:
    engine, reference = engine_factory("engine")(), ReferenceEngine()
    for spec in specs:
        engine.add_symbol(spec)
        reference.add_symbol(spec)
    return engine, reference


def _assert_same_books(
    engine: EngineLike, reference: EngineLike, specs: Sequence[SymbolSpec], where: str
) -> None:
    for spec in specs:
        got, want = engine.book(spec.symbol), reference.book(spec.symbol)
        assert got.last_seq == want.last_seq, f"{where}: {spec.symbol} last_seq differs"
        assert book_state(got) == book_state(want), f"{where}: {spec.symbol} book differs"


def run_differential(
    cmds: Sequence[Command], specs: Sequence[SymbolSpec] = DEFAULT_SYMBOLS
) -> list[Report]:
    """Run both, command by command; fail on the first differing report or book."""
    engine, reference = _fresh_pair(specs)
    reports: list[Report] = []
    for i, cmd in enumerate(cmds):
        got, want = engine.execute(cmd), reference.execute(cmd)
        if got != want:
            pytest.fail(_mismatch(i, cmd, got, want))
        reports.append(want)
        if i % COMPARE_BOOKS_EVERY == 0:
            _assert_same_books(engine, reference, specs, f"after command #{i}")
    _assert_same_books(engine, reference, specs, "at the end")
    return reports


@pytest.fixture(scope="module")
def flows() -> dict[int, list[Command]]:
    return {seed: random_flow(seed, N_COMMANDS) for seed in SEEDS}


@pytest.mark.parametrize("seed", SEEDS)
def test_engine_matches_reference_on_random_flow(
    flows: dict[int, list[Command]], seed: int
) -> None:
    run_differential(flows[seed])


def test_engine_execute_batch_matches_reference(flows: dict[int, list[Command]]) -> None:
    cmds = flows[SEEDS[0]]
    engine, reference = _fresh_pair(DEFAULT_SYMBOLS)
    got = engine.execute_batch(cmds)
    want = [reference.execute(cmd) for cmd in cmds]
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        if a != b:
            pytest.fail(_mismatch(i, cmds[i], a, b))
    _assert_same_books(engine, reference, DEFAULT_SYMBOLS, "after execute_batch")


def test_engine_matches_reference_on_a_single_busy_symbol() -> None:
    spec = DEFAULT_SYMBOLS[0]
    run_differential(random_flow(1234, N_COMMANDS, symbols=[spec]), [spec])


def test_random_flows_exercise_every_outcome(flows: dict[int, list[Command]]) -> None:
    """The flows are only useful if they reach every reject code, status and STP path."""
    codes: Counter[int] = Counter()
    statuses: Counter[int] = Counter()
    stp_makers = multi_fill = 0
    for cmds in flows.values():
        reference = ReferenceEngine()
        for spec in DEFAULT_SYMBOLS:
            reference.add_symbol(spec)
        for report in reference.execute_batch(cmds):
            codes[report.reject_code] += 1
            statuses[report.status] += 1
            stp_makers += bool(report.expired) and report.status != OrderStatus.CANCELED
            multi_fill += len({f.price for f in report.fills}) > 1
    assert set(codes) == set(RejectCode), f"never seen: {set(RejectCode) - set(codes)}"
    assert set(statuses) == set(OrderStatus)
    assert stp_makers > 50 and multi_fill > 50
