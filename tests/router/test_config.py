"""RouterConfig from flags and environment, and its bounds."""

from __future__ import annotations

import argparse

import pytest

from router.config import RouterConfig, add_arguments, from_args
from router.errors import ConfigError


def _parse(*argv: str) -> RouterConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_args(parser.parse_args(list(argv)))


def test_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOTMATCH_ETCD", "10.0.0.1:2379,10.0.0.2:2379")
    monkeypatch.setenv("SPOTMATCH_ROUTER_BUFFER_SECONDS", "2.5")
    monkeypatch.setenv("SPOTMATCH_ROUTER_LINK_INFLIGHT", "2")
    config = _parse("--router-id", "r7", "--batch-max", "200", "--link-queue", "50")
    assert config.link_inflight_batches == 2
    assert config.etcd_endpoints == ("10.0.0.1:2379", "10.0.0.2:2379")
    assert (config.router_id, config.batch_max_commands, config.link_max_queued) == ("r7", 200, 50)
    assert config.buffer_max_seconds == 2.5


def test_etcd_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPOTMATCH_ETCD", raising=False)
    with pytest.raises(SystemExit, match="--etcd"):
        _parse()


@pytest.mark.parametrize(
    "overrides",
    [{"batch_max_commands": 1001}, {"batch_max_commands": 0}, {"batch_max_bytes": 16 << 20},
     {"link_inflight_batches": 0}, {"buffer_max_commands": -1}],
)  # fmt: skip
def test_bounds(overrides: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        RouterConfig(router_id="r", listen="x:1", **overrides)  # type: ignore[arg-type]
    with pytest.raises(SystemExit):
        _parse("--etcd", "h:1", "--batch-max", "1001")
