"""The error tree. Low-level errors are translated into it at each boundary, once.

    CallgateError                      .code: stable id, .message: safe to show a client
    ├── ConfigurationError             a setting, enterprise or host row is unusable
    ├── InvalidInput                   a request value failed the allow-list (.field)
    ├── AuthenticationFailed           unknown or inactive secret
    ├── DatabaseUnavailable            the database could not be reached in time
    ├── Conflict                       a write clashed with a constraint (idempotency key)
    └── PbxError                       .host; .maybe_executed: the command may have run
        ├── SshConnectionRefused       nothing listens on the host's SSH port
        ├── SshConnectTimeout          no SSH handshake within the connect timeout
        ├── SshAuthenticationFailed    the host refused our credentials
        ├── SshHostKeyRejected         unknown or changed host key (credentials never sent)
        ├── SshConnectionFailed        any other failure before the command was sent
        ├── PbxBusy                    no SSH session free within the pool wait
        ├── AsteriskNotRunning         `Unable to connect to remote asterisk`
        ├── AsteriskNotFound           the host's shell has no such program
        ├── CommandTimeout             sent, but no answer within the command timeout
        ├── ConnectionLost             the connection dropped after the command was sent
        ├── OutputTooLarge             the answer exceeded the bounded read
        ├── UnexpectedOutput           Asterisk answered something we cannot use
        ├── CallNotCreated             originate ran, but the dialplan did not take the call
        └── CallUnconfirmed            originate ran, its channels appeared, never progressed

Messages never contain secrets, passwords or DSNs: they are shown to clients and logged.
"""

from __future__ import annotations


class CallgateError(Exception):
    """Base of every error the service reports on purpose."""

    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigurationError(CallgateError):
    code = "configuration_error"


class InvalidInput(CallgateError):
    code = "invalid_input"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class AuthenticationFailed(CallgateError):
    code = "unauthorized"


class DatabaseUnavailable(CallgateError):
    code = "database_unavailable"

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        # True when a pooled connection turned out dead: one retry on a fresh one is safe.
        self.retryable = retryable


class Conflict(CallgateError):
    code = "conflict"


def error_class(code: str) -> type[CallgateError]:
    """The error class of a stored `code` (to replay an outcome), CallgateError if unknown."""
    pending: list[type[CallgateError]] = [CallgateError]
    while pending:
        cls = pending.pop()
        if cls.code == code:
            return cls
        pending.extend(cls.__subclasses__())
    return CallgateError


class PbxError(CallgateError):
    """The PBX did not (verifiably) take the command."""

    code = "pbx_error"
    # False: the command certainly never reached Asterisk, so nothing was dialled.
    maybe_executed = False

    @property
    def outcome(self) -> str:
        """What a failed originate means for the call, decided here once for the API and the
        call log: `not_dialled` (nothing reached Asterisk), `failed` (Asterisk ran it and
        created no call) or `unknown` (the call may exist: never sent again)."""
        return "unknown" if self.maybe_executed else "not_dialled"

    def __init__(self, message: str, host: str = "") -> None:
        super().__init__(message)
        self.host = host
        # Commands of the same run that had fully run before this failure (transports set
        # it): an error after a run's originate leaves the call possibly placed.
        self.completed = 0


class SshConnectionRefused(PbxError):
    code = "pbx_connection_refused"


class SshConnectTimeout(PbxError):
    code = "pbx_connect_timeout"


class SshAuthenticationFailed(PbxError):
    code = "pbx_authentication_failed"


class SshHostKeyRejected(PbxError):
    code = "pbx_host_key_rejected"


class SshConnectionFailed(PbxError):
    code = "pbx_connection_failed"


class PbxBusy(PbxError):
    code = "pbx_busy"


class AsteriskNotRunning(PbxError):
    code = "asterisk_not_running"  # the CLI could not reach the daemon: nothing ran


class CommandTimeout(PbxError):
    code = "pbx_command_timeout"
    maybe_executed = True


class ConnectionLost(PbxError):
    code = "pbx_connection_lost"
    maybe_executed = True


class OutputTooLarge(PbxError):
    code = "pbx_output_too_large"
    maybe_executed = True


class UnexpectedOutput(PbxError):
    code = "pbx_unexpected_output"
    maybe_executed = True


class CallNotCreated(PbxError):
    code = "pbx_call_not_created"
    maybe_executed = True  # originate ran; the PBX just created nothing

    @property
    def outcome(self) -> str:
        return "failed"  # the dialplan refused it or its channels ended unstarted: no call


class CallUnconfirmed(PbxError):
    """The originate's channels appeared but never ran the dialplan within the window: the call
    may still go on, so its outcome is unknown (and it is never sent again)."""

    code = "pbx_call_unconfirmed"
    maybe_executed = True


class AsteriskNotFound(PbxError):
    """The shell on the host could not find the asterisk program: nothing ran."""

    code = "asterisk_not_found"
