"""A circuit breaker per PBX host: a host that keeps failing to connect is left alone a while.

Why: a dead or blackholed host costs each call the whole connect timeout (10 s) and ends in a
500 anyway; a host refusing our login gets hammered with failed logins (which may get callgate
banned there). After ``failures`` connection-level failures in a row the host's calls fail at
once with ``errors.HostFailing``, for ``cooldown`` seconds; nothing is sent
(``maybe_executed`` False). Then one call, the probe, goes through (half-open): if it reaches
the host the circuit closes, if it fails the cool-down starts again. Concurrent calls during
the probe still fail fast.

What counts (``_verdict``):

* failure: ``errors.PbxUnreachable``, whichever transport reports it (over SSH: refused,
  connect timeout, authentication, host key, any other failure to connect): the host is
  unreachable or unusable, and trying again is pointless;
* success: any answer of the host (over SSH: of its shell), including ``CallNotCreated`` (a
  dialplan problem of one extension, the host works: tripping would block every other
  extension) and ``AsteriskNotRunning`` (detected in one round trip, so failing fast gains
  nothing, and Asterisk restarts in seconds: an open circuit would refuse calls it could take);
* neither (the count stays): ``PbxBusy`` (our own limits), ``CommandTimeout`` and
  ``ConnectionLost`` (the login worked, the command's fate is unknown), cancellation and
  anything that is not a PBX error.

Failed attempts are counted, not failed calls: the SSH pool makes concurrent callers of a
connecting host share one attempt, and hands each of them that attempt's very exception, so an
exception already counted is not counted again, nor one a transport raised from it
(``PbxError.after``). Ten calls failing together on one attempt are one failure, not ten;
attempts made one after another (calls queued for a host's consoles) count one each.
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from callgate import errors
from callgate.logs import get_logger
from callgate.pbx.transport import HostTarget

log = get_logger("callgate.pbx.breaker")
_T = TypeVar("_T")

_INCONCLUSIVE = (errors.PbxBusy, errors.CommandTimeout, errors.ConnectionLost)


class _Verdict(Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    INCONCLUSIVE = "inconclusive"


def _verdict(exc: BaseException | None) -> _Verdict:
    if exc is None:
        return _Verdict.SUCCESS
    if isinstance(exc, errors.PbxUnreachable):
        return _Verdict.FAILURE
    if isinstance(exc, errors.PbxError) and not isinstance(exc, _INCONCLUSIVE):
        return _Verdict.SUCCESS  # the host's shell answered: its SSH side works
    return _Verdict.INCONCLUSIVE


@dataclass(eq=False)
class _Host:
    label: str
    failures: int = 0  # counted connection failures in a row
    open_until: float | None = None  # None: closed; else when the next probe may go
    probing: bool = False
    counted: weakref.ref[BaseException] | None = None  # the last failure counted
    last_error: str = ""
    rejected: int = 0  # calls failed fast since start


class CircuitBreaker:
    """Per host (address and port) a circuit as the module describes; ``call`` guards one use.

    Applied where every PBX command passes (``RoutingTransport.run``, so every transport and
    the console's rx fallback are covered once); the call tracker's listings and hangups pass
    there too, so they count, and are refused, like calls.
    """

    def __init__(
        self,
        *,
        failures: int = 3,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures < 0 or cooldown <= 0:
            raise ValueError("failures must be >= 0 and cooldown > 0")
        self._threshold, self._cooldown, self._clock = failures, cooldown, clock
        self._hosts: dict[tuple[str, int], _Host] = {}

    async def call(self, target: HostTarget, work: Callable[[], Awaitable[_T]]) -> _T:
        """``await work()`` unless the host's circuit is open (then raise errors.HostFailing)."""
        if self._threshold == 0:  # switched off
            return await work()
        key = (target.address, target.port)
        host = self._hosts.setdefault(key, _Host(target.label))
        probe = self._admit(host)
        try:
            result = await work()
        except BaseException as exc:  # cancellation too: a probe must always be given back
            self._settle(host, probe, exc)
            raise
        self._settle(host, probe, None)
        return result

    def _admit(self, host: _Host) -> bool:
        """True if this call is the probe; raise errors.HostFailing if it may not go at all."""
        if host.open_until is None:
            return False
        wait = host.open_until - self._clock()
        if wait <= 0 and not host.probing:
            host.probing = True
            log.info("pbx host probed", host=host.label, failures=host.failures)
            return True
        host.rejected += 1
        when = f"next attempt in {math.ceil(wait)} s" if wait > 0 else "it is being tried now"
        raise errors.HostFailing(
            f"host {host.label} is failing ({host.failures} connection failures in a row, "
            f"last: {host.last_error}); {when}",
            host=host.label,
        )

    def _settle(self, host: _Host, probe: bool, exc: BaseException | None) -> None:
        """Apply a call's outcome to the host's circuit."""
        if probe:
            host.probing = False
        verdict, now = _verdict(exc), self._clock()
        if verdict is _Verdict.SUCCESS:
            if host.open_until is not None:
                log.info("pbx host reachable again, circuit closed", host=host.label)
            host.failures, host.open_until = 0, None
        elif verdict is _Verdict.FAILURE:
            assert isinstance(exc, errors.PbxError)
            host.last_error = exc.message
            attempt = exc.__cause__ if isinstance(exc.__cause__, errors.PbxError) else exc
            if host.counted is not None and host.counted() is attempt:
                return  # another caller of the same shared attempt: counted already
            host.failures += 1
            host.counted = weakref.ref(attempt)
            if probe or (host.open_until is None and host.failures >= self._threshold):
                host.open_until = now + self._cooldown
                report = log.info if probe else log.warning  # once per outage, not per probe
                report(
                    "pbx host failing, circuit open",
                    host=host.label,
                    failures=host.failures,
                    cooldown_s=self._cooldown,
                    error=exc.code,
                )

    def states(self) -> dict[str, str]:
        """Each host's circuit by label: ``closed``, ``open`` or ``half-open`` (metrics)."""
        now = self._clock()
        found: dict[str, str] = {}
        for host in self._hosts.values():
            state = "closed"
            if host.open_until is not None:
                waiting = host.open_until > now and not host.probing
                state = "open" if waiting else "half-open"
            found[host.label] = state
        return found

    def status(self) -> dict[str, object]:
        """Each host's circuit: ``closed``, ``open`` (with ``retry_in_s``) or ``half-open``."""
        now = self._clock()
        hosts: dict[str, object] = {}
        for host in self._hosts.values():
            entry: dict[str, object] = {"state": "closed", "failures": host.failures}
            if host.open_until is not None:
                waiting = host.open_until - now
                entry["state"] = "open" if waiting > 0 and not host.probing else "half-open"
                entry["retry_in_s"] = round(max(0.0, waiting), 1)
            if host.last_error and host.failures:
                entry["last_error"] = host.last_error
            entry["rejected"] = host.rejected
            hosts[host.label] = entry
        return {"failures": self._threshold, "cooldown_s": self._cooldown, "hosts": hosts}
