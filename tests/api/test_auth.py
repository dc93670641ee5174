"""Credentials files, token files, and which commands a principal may send (api/auth.py);
the `spotmatch auth` commands that write them."""

from __future__ import annotations

import argparse
import json
import stat
from pathlib import Path

import pytest

from api.auth import (
    AuthConfigError,
    Credentials,
    Principal,
    credential_entry,
    denied_commands,
    read_token_file,
    stream_accounts,
    token_hash,
)
from matching.v1 import orders_pb2
from router import config as router_config
from shard import config as shard_config
from spotmatch.cli import main

TOKEN = "a-token-of-enough-length-42"
DESK = Principal("desk", frozenset({"a1", "a2"}))


def _write(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document))
    return path


def test_a_credentials_file_maps_token_hashes_to_accounts(tmp_path: Path) -> None:
    entries = [
        credential_entry("desk", TOKEN, ["a2", "a1", "a1"]),
        credential_entry("risk", "another-token-of-length-42", None),
    ]
    creds = Credentials.load(_write(tmp_path / "c.json", {"credentials": entries}))
    assert creds.principal(TOKEN) == DESK
    risk = creds.principal("another-token-of-length-42")
    assert risk is not None and risk.accounts is None and risk.allows("anyone")
    assert creds.principal("wrong") is None
    assert TOKEN not in (tmp_path / "c.json").read_text()  # only its hash is kept


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        ([], "expected"),
        ({"credentials": ["x"]}, "not an object"),
        ({"credentials": [{"token_sha256": "0" * 64, "accounts": "*"}]}, "'name'"),
        ({"credentials": [{"name": "n", "token_sha256": "abc", "accounts": "*"}]}, "64 lowercase"),
        ({"credentials": [{"name": "n", "token_sha256": "0" * 64, "accounts": []}]}, "accounts"),
        ({"credentials": [{"name": "n", "token_sha256": "0" * 64, "accounts": [1]}]}, "accounts"),
        (
            {"credentials": [{"name": n, "token_sha256": "0" * 64, "accounts": "*"} for n in "ab"]},
            "repeats a token",
        ),
    ],
)
def test_a_bad_credentials_file_is_refused_with_its_reason(
    tmp_path: Path, document: object, complaint: str
) -> None:
    with pytest.raises(AuthConfigError, match=complaint):
        Credentials.load(_write(tmp_path / "c.json", document))


def test_unreadable_or_unparseable_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(AuthConfigError, match="cannot read"):
        Credentials.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(AuthConfigError, match="not JSON"):
        Credentials.load(tmp_path / "bad.json")


def test_a_token_file_holds_one_long_word(tmp_path: Path) -> None:
    (tmp_path / "t").write_text(f"  {TOKEN}\n")
    assert read_token_file(tmp_path / "t") == TOKEN
    for bad in ("short", "two words of enough length", ""):
        (tmp_path / "t").write_text(bad)
        with pytest.raises(AuthConfigError, match="one word"):
            read_token_file(tmp_path / "t")


def _place(account: str) -> orders_pb2.OrderCommand:
    return orders_pb2.OrderCommand(
        place_order=orders_pb2.PlaceOrder(symbol="BTC-USDT", account=account)
    )


def test_only_commands_for_other_accounts_are_denied() -> None:
    commands = [
        _place("a1"),
        _place("x"),
        orders_pb2.OrderCommand(mass_cancel=orders_pb2.MassCancel(account="x")),
        orders_pb2.OrderCommand(cancel_order=orders_pb2.CancelOrder(account="a2")),
        orders_pb2.OrderCommand(),  # no kind: validation refuses it, not authorization
    ]
    assert denied_commands(DESK, commands) == [1, 2]
    assert denied_commands(Principal("risk", None), commands) == []


def test_a_stream_covers_the_accounts_asked_for_if_all_are_allowed() -> None:
    assert stream_accounts(DESK, ["a2", "a2"]) == ["a2"]
    assert stream_accounts(DESK, []) == ["a1", "a2"]  # none named: the credential's own
    assert stream_accounts(DESK, ["a1", "x"]) is None
    assert stream_accounts(Principal("risk", None), []) == []


def test_spotmatch_auth_writes_private_files_a_server_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    creds = tmp_path / "creds.json"
    assert (
        main(["auth", "add", "--credentials", str(creds), "--name", "d", "--accounts", "a1"]) == 0
    )
    token = capsys.readouterr().out.strip()
    assert Credentials.load(creds).principal(token) == Principal("d", frozenset({"a1"}))
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert main(["auth", "add", "--credentials", str(creds), "--name", "d", "--accounts", "*"]) == 2
    assert "already has a credential named 'd'" in capsys.readouterr().err
    cluster = tmp_path / "cluster.token"
    assert main(["auth", "cluster-token", str(cluster)]) == 0
    first = read_token_file(cluster)
    assert main(["auth", "cluster-token", str(cluster)]) == 2  # never replaced by accident
    assert read_token_file(cluster) == first and token_hash(first) != token_hash(token)


def test_processes_refuse_to_start_on_bad_auth_files(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    router_config.add_arguments(parser)
    args = parser.parse_args(["--etcd", "127.0.0.1:1", "--credentials", str(tmp_path / "none")])
    with pytest.raises(SystemExit, match="cannot read credentials file"):
        router_config.from_args(args)
    parser = argparse.ArgumentParser()
    shard_config.add_arguments(parser)
    creds = _write(tmp_path / "c.json", {"credentials": [credential_entry("d", TOKEN, None)]})
    args = parser.parse_args(["--pg-dsn", "x", "--credentials", str(creds)])
    with pytest.raises(SystemExit, match="needs --cluster-token-file"):
        shard_config.from_args(args)
