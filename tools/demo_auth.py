"""The demo cluster's client authentication (decision 0018): one credential for the demo's
market makers, and the two refusals a newcomer sees. (The local cluster itself gives its
routers and shards a cluster token.)"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import grpc

from api.auth import bearer, credential_entry, new_token, write_private
from matching.v1 import gateway_pb2, gateway_pb2_grpc, orders_pb2, types_pb2

TIMEOUT = 10.0
STRANGER = "someone-else"


@dataclass(frozen=True)
class DemoAuth:
    token: str  # the market makers' token
    router_args: tuple[str, ...]


def write_demo_auth(directory: Path, accounts: list[str]) -> DemoAuth:
    """A credentials file in ``directory`` (mode 0600) for ``accounts``, and the router
    flags that use it."""
    makers = directory / "credentials.json"
    token = new_token()
    document = {"credentials": [credential_entry("demo-market-makers", token, accounts)]}
    write_private(makers, json.dumps(document, indent=2) + "\n")
    return DemoAuth(token, ("--credentials", str(makers)))


async def show_refusals(router: str, token: str, symbol: str) -> bool:
    """Print what the router answers an order without a token, and one with the makers'
    token for an account it does not cover; True if both were refused as they should be."""
    order = orders_pb2.PlaceOrder(
        symbol=symbol, account=STRANGER, side=types_pb2.SIDE_BUY, quantity=1, price=1,
        order_type=types_pb2.ORDER_TYPE_LIMIT, time_in_force=types_pb2.TIME_IN_FORCE_GTC,
    )  # fmt: skip
    request = gateway_pb2.SubmitOrderRequest(order=order)
    codes = []
    async with grpc.aio.insecure_channel(router) as channel:
        stub = gateway_pb2_grpc.OrderGatewayServiceStub(channel)
        for metadata in (None, bearer(token)):
            try:
                await stub.SubmitOrder(request, timeout=TIMEOUT, metadata=metadata)
                codes.append(grpc.StatusCode.OK)
            except grpc.aio.AioRpcError as err:
                codes.append(err.code())
    print(f"auth: an order without a token -> {codes[0].name}; with the makers' token for"
          f" account {STRANGER!r} -> {codes[1].name}")  # fmt: skip
    return codes == [grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED]
