"""The cluster package's exceptions; each says whether retrying may help."""

from __future__ import annotations


class ClusterError(Exception):
    """Root of every error raised by ``cluster``."""

    retriable = True


class RegistryUnavailable(ClusterError):
    """The registry (etcd) could not be reached within its timeout."""


class WatchLost(ClusterError):
    """A watch ended (connection error or compacted revision): resync with a full read."""


class MalformedValue(ClusterError):
    """A stored value could not be decoded."""

    retriable = False


class InvalidRequest(ClusterError):
    """An operator request that cannot be carried out (unknown shard, unknown symbol...)."""

    retriable = False
