"""`spotmatch auth`: make the tokens routers and shards check (api/auth.py, decision 0018)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "auth",
        help="create client credentials and the cluster token",
        description="Clients present a bearer token (gRPC metadata 'authorization: Bearer "
        "TOKEN'). Routers (--credentials) and shards keep only each token's SHA-256 and the "
        "accounts it may trade; routers present the cluster token (--cluster-token-file) to "
        "shards, which accept nothing else on ShardService. Tokens are printed once.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser(
        "add",
        help="add a client credential to a credentials file and print its token",
        description="Create a random token for NAME, add its hash and accounts to FILE "
        "(created with mode 0600 if missing) and print the token. Routers read the file "
        "at start.",
    )
    add.add_argument("--credentials", type=Path, required=True, metavar="FILE")
    add.add_argument("--name", required=True, help="who holds the token (unique in FILE)")
    add.add_argument(
        "--accounts",
        required=True,
        help="comma-separated accounts the token may trade, or '*' for every account",
    )
    add.set_defaults(handler=_add)
    cluster = actions.add_parser(
        "cluster-token",
        help="write a new cluster token to a file (mode 0600)",
        description="Write a random cluster token to FILE for routers and shards "
        "(--cluster-token-file). Refuses to replace an existing file unless --force.",
    )
    cluster.add_argument("file", type=Path, metavar="FILE")
    cluster.add_argument("--force", action="store_true", help="replace an existing file")
    cluster.set_defaults(handler=_cluster_token)


def _add(args: argparse.Namespace) -> int:
    from api.auth import (
        ALL_ACCOUNTS,
        AuthConfigError,
        Credentials,
        credential_entry,
        new_token,
        write_private,
    )

    accounts = [a.strip() for a in args.accounts.split(",") if a.strip()]
    if not accounts:
        return _fail("--accounts names no account")
    path: Path = args.credentials
    document: dict[str, Any] = {"credentials": []}
    if path.exists():
        try:
            Credentials.load(path)  # refuse to extend a file routers would refuse
        except AuthConfigError as exc:
            return _fail(str(exc))
        document = json.loads(path.read_text())
    if any(entry["name"] == args.name for entry in document["credentials"]):
        return _fail(f"{path} already has a credential named {args.name!r}")
    token = new_token()
    everyone = accounts == [ALL_ACCOUNTS]
    document["credentials"].append(
        credential_entry(args.name, token, None if everyone else accounts)
    )
    write_private(path, json.dumps(document, indent=2) + "\n")
    print(token)
    return 0


def _cluster_token(args: argparse.Namespace) -> int:
    from api.auth import write_token_file

    if args.file.exists() and not args.force:
        return _fail(f"{args.file} exists (--force replaces it; routers and shards then need it)")
    write_token_file(args.file)
    print(f"cluster token written to {args.file}")
    return 0


def _fail(message: str) -> int:
    print(f"spotmatch auth: {message}", file=sys.stderr)
    return 2
