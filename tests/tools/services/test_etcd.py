"""The etcd launcher against a real server: put/get, restarts, crashes, pause."""

from __future__ import annotations

import aetcd
import pytest

from tools.services import EtcdServer, ServiceError

pytestmark = pytest.mark.integration

RPC_TIMEOUT = 2


def _client(server: EtcdServer, timeout: int = RPC_TIMEOUT) -> aetcd.Client:
    return aetcd.Client(host="127.0.0.1", port=server.client_port, timeout=timeout)


async def _get(server: EtcdServer, key: bytes) -> bytes | None:
    async with _client(server) as client:
        got = await client.get(key)
    return None if got is None else bytes(got.value)


async def test_put_then_get(etcd_server: EtcdServer) -> None:
    assert etcd_server.endpoint == f"127.0.0.1:{etcd_server.client_port}"
    async with _client(etcd_server) as client:
        await client.put(b"/spotmatch/shards/s1", b"owner=a;epoch=1")
        got = await client.get(b"/spotmatch/shards/s1")
        assert got is not None
        assert got.value == b"owner=a;epoch=1"
        assert await client.get(b"/spotmatch/shards/missing") is None


@pytest.mark.parametrize("crash", [False, True])
async def test_data_survives_a_restart(etcd_server: EtcdServer, crash: bool) -> None:
    async with _client(etcd_server) as client:
        await client.put(b"k", b"v1")
    if crash:
        etcd_server.kill()
    else:
        etcd_server.stop()
    assert not etcd_server.is_running()
    etcd_server.start()
    assert await _get(etcd_server, b"k") == b"v1"


async def test_a_paused_server_does_not_answer_until_resumed(etcd_server: EtcdServer) -> None:
    async with _client(etcd_server) as client:
        await client.put(b"k", b"before")
    etcd_server.pause()
    try:
        assert etcd_server.is_running()
        async with _client(etcd_server, timeout=1) as client:
            with pytest.raises(aetcd.exceptions.ConnectionTimeoutError):
                await client.get(b"k")
    finally:
        etcd_server.resume()
    assert await _get(etcd_server, b"k") == b"before"


def test_pause_when_stopped_is_an_error(etcd_server: EtcdServer) -> None:
    etcd_server.stop()
    with pytest.raises(ServiceError, match="not running"):
        etcd_server.pause()
