"""Fixtures: every unit test runs against the engine and the reference matcher."""

from __future__ import annotations

import pytest

from tests.shard.engine.flows import DEFAULT_SYMBOLS
from tests.shard.engine.invariants import EngineFactory, EngineLike
from tests.shard.engine.reference import ReferenceEngine


def engine_factory(name: str) -> EngineFactory:
    if name == "reference":
        return ReferenceEngine
    from shard.engine import MatchingEngine  # imported here: fail per test, not at collection

    return MatchingEngine


@pytest.fixture(params=["engine", "reference"])
def new_engine(request: pytest.FixtureRequest) -> EngineFactory:
    """A factory of fresh, empty engines of one implementation."""
    return engine_factory(request.param)


@pytest.fixture
def eng(new_engine: EngineFactory) -> EngineLike:
    """A fresh engine with BTC-USDT (tick 1, lot 1) and ETH-USDT (tick 5, lot 10) added."""
    engine = new_engine()
    for spec in DEFAULT_SYMBOLS:
        engine.add_symbol(spec)
    return engine
