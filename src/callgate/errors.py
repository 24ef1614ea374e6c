"""The error tree. Low-level errors are translated into it at each boundary, once.

    CallgateError                      .code: stable id, .message: safe to show a client
    ├── ConfigurationError             a setting, enterprise or host row is unusable
    ├── InvalidInput                   a request value failed the allow-list (.field)
    ├── AuthenticationFailed           unknown or inactive secret
    ├── DestinationNotAllowed          the enterprise's destination policy refuses the call
    ├── DatabaseUnavailable            the database could not be reached in time
    ├── Conflict                       a write clashed with a constraint (idempotency key)
    │   └── AlreadyExists              a row with this key is there already
    └── PbxError                       .host; .maybe_executed: the command may have run;
        │                              .completed: commands of its run that had run before it
        ├── PbxUnreachable             the host cannot be reached or does not let us in
        │   │                          (nothing sent): what the breaker counts (pbx/breaker.py)
        │   ├── SshConnectionRefused   nothing listens on the host's SSH port
        │   ├── SshConnectTimeout      no SSH handshake within the connect timeout
        │   ├── SshAuthenticationFailed  the host refused our credentials
        │   ├── SshHostKeyRejected     unknown or changed host key (credentials never sent)
        │   └── SshConnectionFailed    any other failure before the command was sent
        ├── PbxBusy                    no SSH session free within the pool wait
        │   └── HostFailing            the host's circuit is open: refused here, nothing sent
        ├── AsteriskNotRunning         `Unable to connect to remote asterisk`
        │   └── AsteriskWentAway       ... said once the command was sent: it may have run
        ├── AsteriskNotFound           the host's shell has no such program
        ├── NotSent                    the rest of a run's commands can go another way
        │   ├── SafeToResend           this console cannot answer: another console may
        │   └── ConsoleUnavailable     no console can: the rx fallback takes the rest
        ├── CommandTimeout             sent, but no answer within the command timeout
        ├── ConnectionLost             the connection dropped after the command was sent
        ├── OutputTooLarge             the answer exceeded the bounded read
        ├── UnexpectedOutput           Asterisk answered something we cannot use
        ├── CallNotCreated             originate ran, but the dialplan did not take the call
        └── CallUnconfirmed            originate ran, its channels appeared, never progressed

Every field of an error is given when it is raised: a caught error is never changed (the SSH
pool hands one connection failure to every caller that shared the attempt). What a failure
means for a call is decided once, by ``PbxError.outcome``.

Messages never contain secrets, passwords or DSNs: they are shown to clients and logged.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Self


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


class DestinationNotAllowed(CallgateError):
    """The enterprise's destination policy refuses the call (domain/destinations.py): nothing
    is dialled. The message says why, the number masked."""

    code = "destination_not_allowed"


class DatabaseUnavailable(CallgateError):
    code = "database_unavailable"

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        # True when a pooled connection turned out dead: one retry on a fresh one is safe.
        self.retryable = retryable


class Conflict(CallgateError):
    code = "conflict"


class AlreadyExists(Conflict):
    """A row with this key is there already (an enterprise's number or secret)."""

    code = "already_exists"


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

    def __init__(self, message: str, host: str = "", *, completed: int = 0) -> None:
        super().__init__(message)
        self.host = host
        # Commands of the same run that had fully run before this failure: an error after a
        # run's originate leaves the call possibly placed (pbx/client.py).
        self.completed = completed

    def after(self, done: int) -> Self:
        """This failure as the end of a run in which ``done`` commands had run before the part
        that failed: a new error (this one may be another caller's too), caused by this one."""
        if done == 0:
            return self
        later = copy.copy(self)
        later.completed = self.completed + done
        later.__cause__ = self
        return later


class PbxUnreachable(PbxError):
    """The host cannot be reached, or does not let us in: nothing was sent. Whatever the
    transport, this is the failure the circuit breaker counts (pbx/breaker.py)."""

    code = "pbx_unreachable"


class SshConnectionRefused(PbxUnreachable):
    code = "pbx_connection_refused"


class SshConnectTimeout(PbxUnreachable):
    code = "pbx_connect_timeout"


class SshAuthenticationFailed(PbxUnreachable):
    code = "pbx_authentication_failed"


class SshHostKeyRejected(PbxUnreachable):
    code = "pbx_host_key_rejected"


class SshConnectionFailed(PbxUnreachable):
    code = "pbx_connection_failed"


class PbxBusy(PbxError):
    code = "pbx_busy"


class HostFailing(PbxBusy):
    """The host's circuit is open (pbx/breaker.py): the call was refused here, nothing reached
    the host. A PbxBusy: like a full pool, the host is unavailable for now and a retry later
    may work (the v1 API answers 503)."""

    code = "pbx_host_failing"


class AsteriskNotRunning(PbxError):
    code = "asterisk_not_running"  # the CLI could not reach the daemon: nothing ran


class AsteriskWentAway(AsteriskNotRunning):
    """A console said Asterisk went away after the command was written: it may have run."""

    code = "asterisk_went_away"
    maybe_executed = True


class AsteriskNotFound(PbxError):
    """The shell on the host could not find the asterisk program: nothing ran."""

    code = "asterisk_not_found"


class NotSent(PbxError):
    """The rest of a run's commands was not sent, or only reads: sending it another way cannot
    run a command that changes the PBX twice. ``answers``: the run's commands answered before
    (the other way must not run those again); ``completed`` counts them. The console transport
    raises and handles these itself (pbx/console.py): no caller of a transport sees one."""

    code = "pbx_not_sent"

    def __init__(self, message: str, host: str = "", answers: Sequence[str] = ()) -> None:
        super().__init__(message, host, completed=len(answers))
        self.answers = list(answers)


class SafeToResend(NotSent):
    """A console ended before it answered the rest (pbx/console_session.py): another console
    may take it."""

    code = "pbx_safe_to_resend"


class ConsoleUnavailable(NotSent):
    """No console can take the rest (pbx/console.py): the host's rx fallback must."""

    code = "pbx_console_unavailable"


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
