"""The local cluster launcher's exceptions."""

from __future__ import annotations


class LauncherError(Exception):
    """Root of tools.cluster's errors: the local cluster could not be started or stopped.

    The message is meant for the operator as is (it quotes the failing component's log)."""

    retriable = False


class AlreadyRunning(LauncherError):
    """`up` found a cluster it started earlier still running in the run directory."""
