"""The router's errors. Per-command failures travel as CommandError messages (api.status);
exceptions are for the router's own machinery."""

from __future__ import annotations


class RouterError(Exception):
    """Root of router errors."""

    retriable = False


class LinkOverloaded(RouterError):
    """A shard link's bounded queue is full: the caller backs off (RESOURCE_EXHAUSTED)."""

    retriable = True


class LinkClosed(RouterError):
    """The link was closed (shard left the cluster, router stopping)."""

    retriable = True


class ConfigError(RouterError):
    """A configuration value out of its allowed range."""
