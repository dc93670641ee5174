"""Bad input at the router gets the same status as at the shard (shared ``api`` checks).

Each case is sent both to a shard directly and through the router in front of it; the
status code, the BadRequest fields and the CommandError (code, reason, retryable, symbol,
field paths) must be equal, and nothing malformed reaches the durable record."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from api.status import decode_bad_request, decode_command_error
from matching.v1 import gateway_pb2, orders_pb2, shard_pb2
from matching.v1 import types_pb2 as T
from tests.router.support import BTC, ETH, Stub, cluster, journal, running_router
from tests.shard.bad_input_support import (
    BATCH_ONLY,
    ENGINE_REJECTS,
    JUNK,
    MALFORMED,
    UNKNOWN,
    Command,
    cancel,
    final_status,
    ids,
    mass,
    order,
    sandwich,
    trade,
    unary,
)
from tests.shard.support import gateway

pytestmark = pytest.mark.integration
TIMEOUT = 10.0
GATEWAY = "/matching.v1.OrderGatewayService/"


@pytest.fixture
async def stubs(pg_dsn: str) -> AsyncIterator[tuple[Stub, Stub, str, list[int]]]:
    """(shard, router, dsn, their ports): one shard serving BTC and ETH, a router."""
    async with cluster(pg_dsn) as state:
        node = await state.start_shard("shard-a", (BTC, ETH))
        channel, shard = gateway(node.port)
        async with channel, running_router(state) as (router_node, router):
            yield shard, router, pg_dsn, [node.port, router_node.port]


def _error_shape(error: orders_pb2.CommandError | None) -> Any:
    if error is None:
        return None
    fields = [v.field for v in error.field_violations]
    return (error.code, error.reason, error.retryable, error.symbol, fields)


async def _unary_outcome(stub: Stub, command: Command) -> Any:
    try:
        await unary(stub, command)
    except grpc.aio.AioRpcError as err:
        metadata: Any = err.trailing_metadata()
        violations = [v.field for v in decode_bad_request(metadata)]
        return err.code(), violations, _error_shape(decode_command_error(metadata))
    raise AssertionError("the call succeeded")


def _result_shape(result: orders_pb2.CommandResult) -> Any:
    kind = result.WhichOneof("result")
    if kind == "error":
        return result.correlation_id, _error_shape(result.error)
    if kind == "mass_cancel":
        return result.correlation_id, [_error_shape(e) for e in result.mass_cancel.errors]
    return result.correlation_id, result.report.status, result.report.reject_code


async def _batch(stub: Stub, commands: list[Command]) -> list[Any]:
    request = gateway_pb2.SubmitBatchRequest(commands=commands)
    return [_result_shape(r) for r in (await stub.SubmitBatch(request, timeout=TIMEOUT)).results]


@pytest.mark.parametrize(("name", "bad", "path"), MALFORMED, ids=ids(MALFORMED))
async def test_malformed_unary_same_status(stubs: Any, name: str, bad: Command, path: str) -> None:
    shard, router, dsn, _ = stubs
    expected = await _unary_outcome(shard, bad)
    assert expected[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert await _unary_outcome(router, bad) == expected
    assert await journal(dsn, BTC) == [] and await journal(dsn, ETH) == []


@pytest.mark.parametrize(
    ("name", "bad", "path"), MALFORMED + BATCH_ONLY, ids=ids(MALFORMED + BATCH_ONLY)
)
async def test_malformed_in_a_batch_same_result(
    stubs: Any, name: str, bad: Command, path: str
) -> None:
    shard, router, _, _ = stubs
    expected = await _batch(shard, sandwich(bad))
    assert await _batch(router, sandwich(bad)) == expected
    assert expected[1][1][3:] == (bad_symbol(bad), [f"commands[1].{path}"])


def bad_symbol(command: Command) -> str:
    kind = command.WhichOneof("command")
    return str(getattr(command, kind).symbol) if kind else ""


@pytest.mark.parametrize(
    ("name", "bad", "code_name"), ENGINE_REJECTS[:8], ids=ids(ENGINE_REJECTS[:8])
)
async def test_engine_rejects_are_the_same_reports(
    stubs: Any, name: str, bad: Command, code_name: str
) -> None:
    shard, router, _, _ = stubs
    assert await _batch(router, sandwich(bad)) == await _batch(shard, sandwich(bad))


async def test_unknown_symbol_same_status(stubs: Any) -> None:
    shard, router, dsn, _ = stubs
    for bad in (order(symbol=UNKNOWN), cancel(symbol=UNKNOWN, order_id=1)):
        expected = await _unary_outcome(shard, bad)
        assert expected[0] == grpc.StatusCode.NOT_FOUND
        assert await _unary_outcome(router, bad) == expected
        assert await _batch(router, sandwich(bad)) == await _batch(shard, sandwich(bad))
    request = gateway_pb2.MassCancelRequest(
        mass_cancel=orders_pb2.MassCancel(symbol=UNKNOWN, account="m")
    )
    results = [(await s.MassCancel(request, timeout=TIMEOUT)).result for s in (shard, router)]
    assert [[_error_shape(e) for e in r.errors] for r in results] == [
        [_error_shape(e) for e in results[0].errors]
    ] * 2
    assert len(results[0].errors) == 1 and not results[1].reports
    bad_mass = mass(account="")
    assert await _unary_outcome(router, bad_mass) == await _unary_outcome(shard, bad_mass)
    assert {r[1] for r in await journal(dsn, BTC)} <= {"good-1", "good-2"}


async def test_too_many_commands_and_late_options_fail_the_call(stubs: Any) -> None:
    shard, router, dsn, _ = stubs
    too_many = [orders_pb2.OrderCommand(correlation_id=i + 1) for i in range(1001)]
    for stub in (shard, router):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.SubmitBatch(
                gateway_pb2.SubmitBatchRequest(commands=too_many), timeout=TIMEOUT
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        metadata: Any = caught.value.trailing_metadata()
        assert [v.field for v in decode_bad_request(metadata)] == ["commands"]
        call = trade(stub)
        await call.write(gateway_pb2.TradeRequest(commands=too_many))
        assert await final_status(call) == grpc.StatusCode.INVALID_ARGUMENT
        call = trade(stub)
        await call.write(gateway_pb2.TradeRequest())
        late = gateway_pb2.TradeRequest(options=gateway_pb2.TradeStreamOptions(accounts=["a"]))
        await call.write(late)
        assert await final_status(call) == grpc.StatusCode.INVALID_ARGUMENT
    assert await journal(dsn, BTC) == []


async def test_admin_fields_smuggled_into_a_command_do_nothing(stubs: Any) -> None:
    """A SetSymbolStatus (ShardCommand's admin field 7) appended to an OrderCommand's bytes is
    an unknown field to the router: it must not reach the shard, which would run it."""
    shard, router, dsn, _ = stubs
    halt = shard_pb2.ShardCommand(
        set_symbol_status=orders_pb2.SetSymbolStatus(symbol=ETH, status=T.SYMBOL_STATUS_HALTED)
    )
    for stub in (router, shard):
        smuggled = orders_pb2.OrderCommand.FromString(
            order(symbol=BTC, account="smuggler").SerializeToString() + halt.SerializeToString()
        )
        assert smuggled.WhichOneof("command") == "place_order"
        [result] = await _batch(stub, [smuggled])
        assert result[1] == T.ORDER_STATUS_NEW
    assert await journal(dsn, ETH) == []
    assert [r[1] for r in await journal(dsn, BTC)] == ["smuggler"] * 2


@pytest.mark.parametrize("junk", list(JUNK.values()), ids=list(JUNK))
async def test_unparseable_bytes_same_status(stubs: Any, junk: bytes) -> None:
    *_, ports = stubs
    codes = []
    for port in ports:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await channel.unary_unary(GATEWAY + "SubmitOrder")(junk, timeout=TIMEOUT)
        codes.append(caught.value.code())
    assert codes == [grpc.StatusCode.INVALID_ARGUMENT] * 2


REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


@pytest.mark.parametrize("junk", list(JUNK.values()), ids=list(JUNK))
async def test_unparseable_bytes_on_every_kind_of_rpc_are_invalid_argument(
    stubs: Any, junk: bytes
) -> None:
    """Unary, server-streaming and bidi calls alike (server reflection's too), on the shard
    and on the router."""
    *_, ports = stubs
    for port in ports:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            calls: list[Any] = [
                channel.unary_unary(GATEWAY + "GetOrderBook")(junk, timeout=TIMEOUT),
                channel.unary_stream(GATEWAY + "StreamMarketData")(junk, timeout=TIMEOUT),
            ]
            for method in (GATEWAY + "Trade", REFLECTION):
                stream_call: Any = channel.stream_stream(method)(timeout=TIMEOUT)
                await stream_call.write(junk)
                calls.append(stream_call)
            for call in calls:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await (call.read() if hasattr(call, "read") else call)
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (port, call)
                assert "Traceback" not in (caught.value.details() or "")


async def test_a_command_too_big_to_frame_is_refused_and_the_link_stays_up(pg_dsn: str) -> None:
    """A request just under the router's message limit whose one command, framed into an
    ExecuteRequest, would pass the limit: sent, it could end the link's stream, failing
    everything in flight on it and cancelling every subscribed maker's orders."""
    limit = 64 << 10
    async with cluster(pg_dsn) as state:
        await state.start_shard("shard-a", (BTC, ETH))
        async with running_router(state, max_message_bytes=limit, batch_max_bytes=limit // 2) as (
            node,
            router,
        ):
            maker = trade(router)
            options = gateway_pb2.TradeStreamOptions(accounts=["mm"], cancel_on_disconnect=True)
            resting = order(account="mm", client_order_id="q-1")
            await maker.write(gateway_pb2.TradeRequest(options=options, commands=[resting]))
            assert (await maker.read()).results[0].report.status == T.ORDER_STATUS_NEW
            link = node.links.all()[0]
            huge = order(account="big", client_order_id="c" * (limit - 200))
            assert huge.ByteSize() < limit
            outcome = await _unary_outcome(router, huge)
            assert outcome[0] == grpc.StatusCode.INVALID_ARGUMENT
            assert outcome[1] == ["commands[0].place_order.client_order_id"]
            await maker.write(gateway_pb2.TradeRequest(commands=[order(account="mm")]))
            assert (await maker.read()).results[0].report.status == T.ORDER_STATUS_NEW
            assert node.links.all()[0] is link and link.ready
            rows = await journal(pg_dsn, BTC)  # no cancel of mm's orders, nothing of "big"
            assert [(account, status) for _, account, status in rows] == [
                ("mm", T.ORDER_STATUS_NEW),
                ("mm", T.ORDER_STATUS_NEW),
            ]
            await maker.done_writing()
