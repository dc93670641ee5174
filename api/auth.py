"""Who is calling, and which accounts they may trade (DESIGN section 8).

Callers present a bearer token in the ``authorization`` metadata (``Bearer <token>``).
A server built with an ``Authenticator`` answers UNAUTHENTICATED to any call of a protected
service without a known token, and runs the others with the token's ``Principal`` as
``current()``; handlers then refuse each command for an account the principal may not
trade (PERMISSION_DENIED, decision 0018). Without an Authenticator, ``current()`` is
``UNRESTRICTED``: a development cluster runs open, and says so in its log.

Servers keep only SHA-256 hashes of client tokens (a credentials file, ``Credentials.load``),
so a leaked file gives no token away. The cluster's own identity (routers calling shards) is
one shared token in a file of its own (``read_token_file``).
"""

from __future__ import annotations

import contextvars
import hashlib
import inspect
import json
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import grpc

from matching.v1 import orders_pb2, shard_pb2, types_pb2

from .errors import ApiError
from .interception import Handler, HandlerWrapper
from .status import command_error, command_symbol

METADATA_KEY = "authorization"
_SCHEME = "Bearer "
ALL_ACCOUNTS = "*"
MIN_TOKEN_CHARS = 16
UNAUTHENTICATED_MESSAGE = "missing or unknown credentials"
DENIED_MESSAGE = "account not allowed for this credential"
DENIED_STREAM = "a stream account is not allowed for this credential"
DENIED_ORDER = "the order's account is not allowed for this credential"

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
PbCommand: TypeAlias = orders_pb2.OrderCommand | shard_pb2.ShardCommand
_ACCOUNT_KINDS = frozenset(("place_order", "cancel_order", "amend_order", "mass_cancel"))


class AuthConfigError(ApiError):
    """A credentials or token file that cannot be used (the process refuses to start)."""


@dataclass(frozen=True)
class Principal:
    name: str
    accounts: frozenset[str] | None  # None: every account

    def allows(self, account: str) -> bool:
        return self.accounts is None or account in self.accounts


UNRESTRICTED = Principal("anyone (authentication off)", None)
CLUSTER = Principal("cluster", None)
_current: contextvars.ContextVar[Principal] = contextvars.ContextVar(
    "spotmatch_principal", default=UNRESTRICTED
)


def current() -> Principal:
    """The principal of the call being served (UNRESTRICTED where auth is off)."""
    return _current.get()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


class Credentials:
    """Token hashes mapped to principals."""

    def __init__(self, by_hash: Mapping[str, Principal]) -> None:
        self._by_hash = dict(by_hash)

    @classmethod
    def of_token(cls, token: str, principal: Principal) -> Credentials:
        return cls({token_hash(token): principal})

    @classmethod
    def load(cls, path: Path) -> Credentials:
        """A credentials file: ``{"credentials": [{"name", "token_sha256", "accounts"}]}``,
        ``accounts`` a list of account ids or ``"*"`` (every account)."""
        try:
            document = json.loads(path.read_text())
        except OSError as exc:
            raise AuthConfigError(f"cannot read credentials file {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise AuthConfigError(f"credentials file {path} is not JSON: {exc}") from None
        entries = document.get("credentials") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise AuthConfigError(f'credentials file {path}: expected {{"credentials": [...]}}')
        by_hash: dict[str, Principal] = {}
        for i, entry in enumerate(entries):
            digest, principal = _entry(entry, f"{path}: credentials[{i}]")
            if digest in by_hash:
                raise AuthConfigError(f"{path}: credentials[{i}] repeats a token")
            by_hash[digest] = principal
        return cls(by_hash)

    def principal(self, token: str) -> Principal | None:
        return self._by_hash.get(token_hash(token))

    def __or__(self, other: Credentials) -> Credentials:
        return Credentials({**self._by_hash, **other._by_hash})

    def __len__(self) -> int:
        return len(self._by_hash)


def _entry(entry: object, where: str) -> tuple[str, Principal]:
    if not isinstance(entry, dict):
        raise AuthConfigError(f"{where} is not an object")
    name, digest, accounts = entry.get("name"), entry.get("token_sha256"), entry.get("accounts")
    if not isinstance(name, str) or not name:
        raise AuthConfigError(f"{where}: 'name' must be a non-empty string")
    if not isinstance(digest, str) or len(digest) != 64 or set(digest) - set("0123456789abcdef"):
        raise AuthConfigError(f"{where}: 'token_sha256' must be 64 lowercase hex digits")
    if accounts == ALL_ACCOUNTS:
        return digest, Principal(name, None)
    if (
        not isinstance(accounts, list)
        or not accounts
        or not all(isinstance(a, str) and a for a in accounts)
    ):
        raise AuthConfigError(f"{where}: 'accounts' must be \"*\" or a list of account ids")
    return digest, Principal(name, frozenset(accounts))


def credential_entry(name: str, token: str, accounts: Iterable[str] | None) -> dict[str, Any]:
    """A credentials-file entry for ``token`` (``accounts`` None: every account)."""
    listed: Any = ALL_ACCOUNTS if accounts is None else sorted(set(accounts))
    return {"name": name, "token_sha256": token_hash(token), "accounts": listed}


def read_token_file(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise AuthConfigError(f"cannot read token file {path}: {exc.strerror}") from None
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
        raise AuthConfigError(
            f"token file {path}: the token must be one word of {MIN_TOKEN_CHARS}+ characters"
        )
    return token


def write_private(path: Path, text: str) -> None:
    """Write a secret file only its owner may read (mode 0600, also when it existed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def write_token_file(path: Path) -> str:
    """A new random token in ``path`` (mode 0600); returns it."""
    token = new_token()
    write_private(path, token + "\n")
    return token


def bearer(token: str) -> tuple[tuple[str, str]]:
    """The call metadata that presents ``token``."""
    return ((METADATA_KEY, _SCHEME + token),)


def _presented(context: Context) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == METADATA_KEY and isinstance(value, str) and value.startswith(_SCHEME):
            return value[len(_SCHEME) :]
    return None


# --- per command ----------------------------------------------------------------------------


def command_account(command: PbCommand) -> str | None:
    """The account a command acts for (None: a kind without one, or no kind set)."""
    kind = command.WhichOneof("command")
    if kind not in _ACCOUNT_KINDS:
        return None
    account: str = getattr(command, kind).account
    return account


def permission_denied(command: PbCommand) -> orders_pb2.CommandError:
    """The CommandError of a command refused for its account (naming its symbol)."""
    symbol = command_symbol(command)
    return command_error(types_pb2.REJECT_CODE_PERMISSION_DENIED, DENIED_MESSAGE, symbol=symbol)


def denied_commands(principal: Principal, commands: Iterable[PbCommand]) -> list[int]:
    """Indexes of the commands acting for an account ``principal`` may not trade."""
    if principal.accounts is None:
        return []
    allowed = principal.accounts
    denied: list[int] = []
    for i, command in enumerate(commands):
        account = command_account(command)
        if account is not None and account not in allowed:
            denied.append(i)
    return denied


def stream_accounts(principal: Principal, asked: Iterable[str]) -> list[str] | None:
    """The accounts a Trade stream covers: those asked for, or every account of a
    restricted principal when none is named. None: some asked account is not allowed."""
    accounts = list(dict.fromkeys(asked))
    if any(not principal.allows(a) for a in accounts):
        return None
    if not accounts and principal.accounts is not None:
        return sorted(principal.accounts)
    return accounts


# --- servers and clients ----------------------------------------------------------------------


class Authenticator(HandlerWrapper):
    """UNAUTHENTICATED for calls of the protected services without a known token; the
    others run with their principal as ``current()``. Other services (health, reflection)
    stay open."""

    def __init__(self, protected: Mapping[str, Credentials]) -> None:
        super().__init__()
        self._protected = {f"/{service}/": creds for service, creds in protected.items()}

    def wrap(self, method: str, handler: Handler) -> Handler:
        credentials = self._protected.get(method[: method.rfind("/") + 1])
        return handler if credentials is None else _wrap(handler, credentials)


def _wrap(handler: Handler, credentials: Credentials) -> Handler:
    async def principal(context: Context) -> Principal:
        token = _presented(context)
        found = credentials.principal(token) if token is not None else None
        if found is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)
        assert found is not None
        return found

    for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
        behavior = getattr(handler, kind)
        if behavior is not None:
            return handler._replace(**{kind: _guard(behavior, principal)})  # type: ignore[no-any-return,attr-defined]
    return handler


def _guard(
    behavior: Callable[..., Any], principal: Callable[[Context], Awaitable[Principal]]
) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behavior):

        async def generator(request: Any, context: Context) -> AsyncIterator[Any]:
            _current.set(await principal(context))
            async for response in behavior(request, context):
                yield response

        return generator

    async def call(request: Any, context: Context) -> Any:
        _current.set(await principal(context))
        return await behavior(request, context)

    return call


def bearer_interceptors(token: str) -> list[grpc.aio.ClientInterceptor]:
    """Client interceptors presenting ``token`` on every call of a channel: one per call
    shape, since grpc.aio files an interceptor under the first shape it implements. (A
    long-lived stream may instead pass ``bearer(token)`` as its call's metadata and skip
    the interceptor's wrapping of each message.)"""
    return [_UnaryUnary(token), _UnaryStream(token), _StreamStream(token)]


class _Bearer:
    def __init__(self, token: str) -> None:
        self._metadata = bearer(token)

    def _details(self, details: Any) -> Any:
        return details._replace(metadata=(*(details.metadata or ()), *self._metadata))


class _UnaryUnary(_Bearer, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request)


class _UnaryStream(_Bearer, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request)


class _StreamStream(_Bearer, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request_iterator)
