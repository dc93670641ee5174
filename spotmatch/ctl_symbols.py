"""`spotmatch ctl symbols`: reference data in Postgres, placement in etcd, halts on the shard.

A halt or resume is a command like any order: it is sent to the owning shard over
`ShardService.Execute`, takes the symbol's next sequence number and is journaled with the
batch, so every later command (and every replay) sees it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import grpc

from api.auth import AuthConfigError, bearer, read_token_file
from api.validation import validate_symbol
from cluster import operations as ops
from cluster.model import ClusterView
from matching.v1 import orders_pb2, shard_pb2, shard_pb2_grpc, types_pb2
from persistence.loader import list_symbols
from persistence.migrate import migrate
from persistence.rows import SymbolRow
from persistence.symbols import create_symbol
from spotmatch.ctl_commands import PG_CONNECT_TIMEOUT, Session
from spotmatch.ctl_output import CtlError, Output, table
from tools.cluster.state import read_state

SHARD_COMMAND_TIMEOUT = 5.0  # the halt/resume round trip, commit included
CTL_ID = "spotmatch-ctl"
INT64_MAX = (1 << 63) - 1  # how the shard's logs name this caller
LIST_COLUMNS = (
    *("symbol", "symbol_id", "tick_size", "lot_size", "min_quantity", "max_quantity"),
    *("status", "shard", "state", "epoch", "pin"),
)
LIST_HEADERS = (
    *("SYMBOL", "ID", "TICK", "LOT", "MIN_QTY", "MAX_QTY"),
    *("STATUS", "SHARD", "STATE", "EPOCH", "PIN"),
)
STATUS_NAMES: dict[int, str] = {
    types_pb2.SYMBOL_STATUS_TRADING: "TRADING",
    types_pb2.SYMBOL_STATUS_HALTED: "HALTED",
}


def _row_data(row: SymbolRow) -> dict[str, Any]:
    data = row._asdict()
    data["status"] = STATUS_NAMES.get(row.status, str(row.status))
    return data


# --- add ------------------------------------------------------------------------------------


def _quantity_range(args: argparse.Namespace) -> tuple[int, int]:
    """Checked (min, max) quantity; defaults: one lot, the largest whole lot in an int64."""
    violations = validate_symbol(args.symbol)
    if violations:
        raise CtlError(f"bad symbol {args.symbol!r}: {violations[0].description}")
    for flag, value in (("--tick-size", args.tick_size), ("--lot-size", args.lot_size)):
        if not 0 < value <= INT64_MAX:
            raise CtlError(f"{flag} must be a positive int64, not {value}")
    lot = args.lot_size
    low = lot if args.min_qty is None else args.min_qty
    high = INT64_MAX // lot * lot if args.max_qty is None else args.max_qty
    if not 0 < low <= high <= INT64_MAX:
        raise CtlError("quantities must satisfy 0 < --min-qty <= --max-qty <= 2**63-1")
    if low % lot or high % lot:
        raise CtlError("--min-qty and --max-qty must be multiples of --lot-size")
    return low, high


async def add(session: Session, args: argparse.Namespace) -> Output:
    low, high = _quantity_range(args)
    await migrate(session.endpoints.pg_dsn, PG_CONNECT_TIMEOUT)
    conn = await session.pg()
    existing = {row.symbol: row for row in await list_symbols(conn)}
    view = await session.snapshot()
    row = existing.get(args.symbol)
    if row is not None and args.symbol in view.symbols:
        raise CtlError(f"symbol {args.symbol!r} already exists")
    note = ""
    if row is None:
        row = await create_symbol(conn, args.symbol, args.tick_size, args.lot_size, low, high)
    else:
        note = " (its reference data was already in Postgres: an earlier add was completed)"
    shard = await ops.add_symbol(await session.registry(), args.symbol, view=view)
    where = f"the controller places it on {shard}" if shard else "no live shard can take it yet"
    text = (
        f"added {row.symbol} (symbol id {row.symbol_id}): tick {row.tick_size}, lot"
        f" {row.lot_size}, quantity {row.min_quantity}..{row.max_quantity}; {where}{note}"
    )
    return Output({**_row_data(row), "placement": shard}, text)


# --- list -----------------------------------------------------------------------------------


async def list_all(session: Session, args: argparse.Namespace) -> Output:
    rows = {row.symbol: row for row in await list_symbols(await session.pg())}
    view = await session.snapshot()
    names = sorted(set(rows) | view.symbols | set(view.assignments))
    data = []
    for name in names:
        item: dict[str, Any] = _row_data(rows[name]) if name in rows else {"symbol": name}
        item.update(_placement(view, name))
        data.append(item)
    text = table(LIST_HEADERS, ([item.get(c, "") for c in LIST_COLUMNS] for item in data))
    return Output(data, text if data else "no symbols")


def _placement(view: ClusterView, symbol: str) -> dict[str, Any]:
    current = view.assignments.get(symbol)
    if current is None:
        state = "unplaced" if symbol in view.symbols else "not in the etcd catalog"
        return {"shard": "", "state": state, "epoch": 0, "pin": view.pins.get(symbol, "")}
    return {
        "shard": current.shard_id,
        "state": current.state.value,
        "epoch": current.epoch,
        "pin": view.pins.get(symbol, ""),
    }


# --- halt / resume ----------------------------------------------------------------------------


async def halt(session: Session, args: argparse.Namespace) -> Output:
    return await _set_status(session, args, types_pb2.SYMBOL_STATUS_HALTED)


async def resume(session: Session, args: argparse.Namespace) -> Output:
    return await _set_status(session, args, types_pb2.SYMBOL_STATUS_TRADING)


async def _set_status(
    session: Session, args: argparse.Namespace, status: types_pb2.SymbolStatus.ValueType
) -> Output:
    path = args.cluster_token_file or _run_dir_token_file(args.run_dir)
    try:
        token = read_token_file(Path(path)) if path else ""
    except AuthConfigError as exc:
        raise CtlError(str(exc)) from None
    view = await session.snapshot()
    shard_id, address = _owner(view, args.symbol)
    report = await _execute(address, shard_id, args.symbol, status, token)
    name = STATUS_NAMES[status]
    data = {
        "symbol": args.symbol,
        "status": name,
        "shard": shard_id,
        "seq": report.seq,
        "reason": args.reason,
    }
    verb = "halted" if status == types_pb2.SYMBOL_STATUS_HALTED else "resumed"
    text = f"{verb} {args.symbol} on {shard_id} at seq {report.seq}"
    if args.reason:
        text += f" (reason: {args.reason})"
    return Output(data, text)


def _owner(view: ClusterView, symbol: str) -> tuple[str, str]:
    current = view.assignments.get(symbol)
    if current is None:
        if symbol in view.symbols:
            raise CtlError(f"symbol {symbol!r} is not placed on a shard yet; try again")
        raise CtlError(f"unknown symbol {symbol!r}")
    if not current.routable():
        raise CtlError(f"symbol {symbol!r} is {current.state.value}; try again when it is active")
    record = view.shards.get(current.shard_id)
    if record is None:
        raise CtlError(
            f"the owner of {symbol!r}, {current.shard_id}, is not live (failover under way);"
            " try again"
        )
    return current.shard_id, record.address


def _run_dir_token_file(run_dir: Path) -> str:
    """The cluster token of the local cluster in ``run_dir`` (`spotmatch up`), if any."""
    state = read_state(run_dir)
    return state.cluster_token_file if state is not None else ""


async def _execute(
    address: str,
    shard_id: str,
    symbol: str,
    status: types_pb2.SymbolStatus.ValueType,
    token: str,
) -> orders_pb2.ExecutionReport:
    command = shard_pb2.ShardCommand(
        correlation_id=1,
        deadline_unix_nanos=time.time_ns() + int(SHARD_COMMAND_TIMEOUT * 1e9),
        set_symbol_status=orders_pb2.SetSymbolStatus(symbol=symbol, status=status),
    )
    request = shard_pb2.ExecuteRequest(
        options=shard_pb2.ExecuteStreamOptions(router_id=CTL_ID), batch_id=1, commands=[command]
    )
    async with grpc.aio.insecure_channel(address) as channel:
        call = shard_pb2_grpc.ShardServiceStub(channel).Execute(
            timeout=SHARD_COMMAND_TIMEOUT, metadata=bearer(token) if token else None
        )
        try:
            await call.write(request)
            response = await call.read()
            await call.done_writing()
        except grpc.RpcError as exc:
            code = exc.code().name if isinstance(exc, grpc.Call) else "ERROR"
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            raise CtlError(f"shard {shard_id} at {address}: {code}: {details}") from None
    if not isinstance(response, shard_pb2.ExecuteResponse) or not response.results:
        raise CtlError(f"shard {shard_id} at {address} closed the stream without an answer")
    return _report(response.results[0], shard_id)


def _report(result: orders_pb2.CommandResult, shard_id: str) -> orders_pb2.ExecutionReport:
    if result.WhichOneof("result") == "error":
        reason = types_pb2.RejectCode.Name(result.error.reason)
        raise CtlError(f"shard {shard_id} did not execute it: {result.error.message} ({reason})")
    report = result.report
    if report.reject_code != types_pb2.REJECT_CODE_UNSPECIFIED:
        reason = types_pb2.RejectCode.Name(report.reject_code)
        raise CtlError(f"shard {shard_id} rejected it: {reason}")
    return report
