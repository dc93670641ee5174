"""`spotmatch ctl` commands on the cluster's placement: status, move, pin, drain, rebalance.

Each handler takes the session (the connections, opened on first use) and the parsed
arguments and returns an Output; the checks and writes are cluster.operations'.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import asdict, dataclass
from typing import Any

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cluster import operations as ops
from cluster.etcd import EtcdRegistry
from cluster.model import ClusterView
from cluster.placement import Move
from cluster.registry import Registry
from spotmatch.ctl_output import CtlError, Output, table

ETCD_TIMEOUT = 2.0  # every etcd call
HEALTH_TIMEOUT = 1.0  # each shard's health check in `status`
PG_CONNECT_TIMEOUT = 5


@dataclass(frozen=True)
class Endpoints:
    etcd: tuple[str, ...]
    etcd_prefix: str
    pg_dsn: str


class Session:
    """The connections of one `spotmatch ctl` run, each opened when first needed."""

    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints
        self._registry: EtcdRegistry | None = None
        self._pg: psycopg.AsyncConnection[Any] | None = None

    async def registry(self) -> Registry:
        if self._registry is None:
            if not self.endpoints.etcd:
                raise CtlError(
                    "no etcd endpoint: pass --etcd HOST:PORT, set SPOTMATCH_ETCD, or start a"
                    " local cluster with `spotmatch up`"
                )
            self._registry = EtcdRegistry(
                self.endpoints.etcd, prefix=self.endpoints.etcd_prefix, timeout=ETCD_TIMEOUT
            )
            await self._registry.connect()
        return self._registry

    async def snapshot(self) -> ClusterView:
        return await (await self.registry()).snapshot()

    async def pg(self) -> psycopg.AsyncConnection[Any]:
        if self._pg is None:
            if not self.endpoints.pg_dsn:
                raise CtlError(
                    "no Postgres DSN: pass --pg-dsn, set SPOTMATCH_PG_DSN, or start a local"
                    " cluster with `spotmatch up`"
                )
            self._pg = await psycopg.AsyncConnection.connect(
                self.endpoints.pg_dsn, autocommit=True, connect_timeout=PG_CONNECT_TIMEOUT
            )
        return self._pg

    async def close(self) -> None:
        if self._registry is not None:
            await self._registry.close()
        if self._pg is not None:
            await self._pg.close()


# --- status -------------------------------------------------------------------------------


async def shard_health(address: str) -> str:
    """SERVING / NOT_SERVING / UNREACHABLE, from the shard's gRPC health service."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=HEALTH_TIMEOUT)
        except grpc.RpcError:
            return "UNREACHABLE"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


async def status(session: Session, args: argparse.Namespace) -> Output:
    report = ops.status(await session.snapshot())
    healths = await asyncio.gather(
        *(shard_health(s.address) if s.live else _expired() for s in report.shards)
    )
    data = asdict(report)
    for shard, health in zip(data["shards"], healths, strict=True):
        shard["health"] = health
    head = f"revision {report.revision}   controller {report.controller or '(none elected)'}"
    shards = table(
        ("SHARD", "ADDRESS", "HEALTH", "DRAINING", "SYMBOLS"),
        (
            (s.shard_id, s.address, h, s.draining, s.symbol_count)
            for s, h in zip(report.shards, healths, strict=True)
        ),
    )
    assignments = table(
        ("SYMBOL", "SHARD", "STATE", "EPOCH", "TARGET", "PIN"),
        ((a.symbol, a.shard_id, a.state, a.epoch, a.target, a.pin) for a in report.assignments),
    )
    parts = [head, shards if report.shards else "no shards", assignments]
    if report.unplaced:
        parts.append("waiting for placement: " + ", ".join(report.unplaced))
    return Output(data, "\n\n".join(parts))


async def _expired() -> str:
    return "LEASE_EXPIRED"


# --- move / pin / unpin ---------------------------------------------------------------------


async def move(session: Session, args: argparse.Namespace) -> Output:
    result = await ops.move(await session.registry(), args.symbol, args.to, wait=args.wait)
    data = {
        "symbol": result.symbol,
        "from": result.from_shard,
        "to": result.to_shard,
        "epoch": result.started.epoch,
        "outcome": result.outcome,
        "observed_pause_seconds": result.observed_pause,
        "pinned": result.to_shard,
    }
    route = f"{result.symbol}: {result.from_shard} -> {result.to_shard}"
    if result.outcome == "started":
        text = (
            f"moving {route}; pinned to {result.to_shard}. Follow it with `spotmatch ctl status`."
        )
        return Output(data, text)
    if result.completed:
        text = (
            f"moved {route} (observed pause {result.observed_pause:.3f} s); pinned to"
            f" {result.to_shard}: `spotmatch ctl unpin {result.symbol}` hands it back to placement"
        )
        return Output(data, text)
    if result.outcome == "rolled back":
        failure = f"move of {route} was rolled back: the target did not take it; it stays put"
    else:
        failure = (
            f"move of {route} not finished after {args.wait:g} s (it goes on; see"
            " `spotmatch ctl status`)"
        )
    return Output(data, f"{result.outcome}: {route}", failure)


async def pin(session: Session, args: argparse.Namespace) -> Output:
    result = await ops.pin(await session.registry(), args.symbol, args.shard)
    effect = (
        f"the controller moves it there from {result.owner}"
        if result.will_move_to
        else "it stays where it is"
    )
    text = f"pinned {result.symbol} to {result.shard_id}; {effect}"
    return Output(asdict(result), text)


async def unpin(session: Session, args: argparse.Namespace) -> Output:
    result = await ops.unpin(await session.registry(), args.symbol)
    if not result.previous:
        return Output(asdict(result), f"{result.symbol} was not pinned; nothing changed")
    effect = (
        f"placement wants {result.will_move_to}: the controller moves it there"
        if result.will_move_to
        else "it stays where it is"
    )
    text = f"unpinned {result.symbol} (was pinned to {result.previous}); {effect}"
    return Output(asdict(result), text)


# --- drain / undrain --------------------------------------------------------------------------


def _moves_table(moves: list[Move], extra: dict[str, str] | None = None) -> str:
    rows = [
        (m.symbol, m.from_shard, m.to_shard, m.reason, *([extra[m.symbol]] if extra else []))
        for m in moves
    ]
    headers = ("SYMBOL", "FROM", "TO", "REASON", *(["RESULT"] if extra else []))
    return table(headers, rows)


async def drain(session: Session, args: argparse.Namespace) -> Output:
    result = await ops.drain(await session.registry(), args.shard)
    lines = [
        f"{result.shard_id} is draining: it gets no new symbols, and the controller moves"
        f" {len(result.moves)} symbol(s) away"
        + (" (it was already draining)" if result.was_draining else "")
    ]
    if result.moves:
        lines.append(_moves_table(result.moves))
    if result.warning:
        lines.append(f"warning: {result.warning}")
    return Output(asdict(result), "\n".join(lines))


async def undrain(session: Session, args: argparse.Namespace) -> Output:
    result = await ops.undrain(await session.registry(), args.shard)
    lines = [f"{result.shard_id} takes symbols again"]
    if not result.was_draining:
        lines[0] += " (it was not draining)"
    if result.moves:
        lines.append(
            "placement wants these on it again (the controller moves them when it"
            " rebalances on its own; otherwise `spotmatch ctl rebalance --apply`):"
        )
        lines.append(_moves_table(result.moves))
    return Output(asdict(result), "\n".join(lines))


# --- rebalance -------------------------------------------------------------------------------


async def rebalance(session: Session, args: argparse.Namespace) -> Output:
    view = await session.snapshot()
    plan = ops.plan_rebalance(view)
    data: dict[str, Any] = {"revision": view.revision, "plan": [asdict(m) for m in plan]}
    if not plan:
        return Output({**data, "applied": [], "conflicted": []}, "balanced: nothing to move")
    if not args.apply:
        text = f"{len(plan)} move(s) would be made (dry run):\n{_moves_table(plan)}"
        return Output(data, text)
    result = await ops.apply_rebalance(await session.registry(), plan, view)
    data["applied"] = [asdict(m) for m in result.applied]
    data["conflicted"] = [asdict(m) for m in result.conflicted]
    outcome = {m.symbol: "started" for m in result.applied}
    outcome |= {m.symbol: "conflict" for m in result.conflicted}
    text = f"started {len(result.applied)} of {len(plan)} move(s):\n{_moves_table(plan, outcome)}"
    failure = ""
    if result.conflicted:
        failure = f"{len(result.conflicted)} move(s) conflicted with concurrent changes: plan again"
    return Output(data, text, failure)
