"""The one place where asyncssh's and the socket layer's errors become callgate's."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import asyncssh

from callgate import errors


@contextmanager
def connect_errors(label: str, timeout: float) -> Iterator[None]:
    """Translate a failure while connecting: nothing was sent to the host's shell yet."""
    try:
        yield
    except errors.PbxError:
        raise
    except ConnectionRefusedError:
        raise errors.SshConnectionRefused(
            f"SSH connection to {label} refused", host=label
        ) from None
    except (TimeoutError, asyncssh.TimeoutError):
        raise errors.SshConnectTimeout(
            f"SSH connection to {label} timed out after {timeout:g} s", host=label
        ) from None
    except asyncssh.HostKeyNotVerifiable as exc:
        raise errors.SshHostKeyRejected(
            f"SSH host key of {label} rejected ({_reason(exc)}); credentials were not sent",
            host=label,
        ) from None
    except asyncssh.PermissionDenied:
        raise errors.SshAuthenticationFailed(
            f"SSH authentication to {label} failed", host=label
        ) from None
    except asyncssh.KeyImportError as exc:
        raise errors.ConfigurationError(f"SSH key for {label} cannot be used: {exc}") from None
    except socket.gaierror:
        raise errors.SshConnectionFailed(
            f"SSH host {label} could not be resolved", host=label
        ) from None
    except (asyncssh.Error, OSError) as exc:
        raise errors.SshConnectionFailed(
            f"SSH connection to {label} failed: {type(exc).__name__}", host=label
        ) from None


@contextmanager
def command_errors(label: str) -> Iterator[None]:
    """Translate a failure after the command was sent: its outcome is unknown."""
    try:
        yield
    except errors.PbxError:
        raise
    except (asyncssh.Error, OSError, EOFError) as exc:
        raise errors.ConnectionLost(
            f"SSH connection to {label} lost during the command ({type(exc).__name__})",
            host=label,
        ) from None


def _reason(exc: asyncssh.Error) -> str:
    # asyncssh's reasons ("Host key is not trusted") contain no secret; keep them short.
    return str(exc.reason)[:120] if getattr(exc, "reason", None) else "not trusted"
