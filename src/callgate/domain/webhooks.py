"""What a webhook endpoint may be, when a failing one is tried again, and what RetailCRM is told.

Pure: no I/O, no clock (the caller passes times and randomness). The use case
(`calls.dispatcher`) resolves the target's name and sends; here are the rules it applies.
"""

from __future__ import annotations

import base64
import ipaddress
import secrets
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from callgate.domain.outcomes import SideOutcome, Sides
from callgate.domain.states import CallState

SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks form of a signing secret
SECRET_BYTES = 32
MAX_URL_LENGTH = 2048
EVENT_TYPES = tuple(f"call.{state.value}" for state in CallState)
JITTER = 0.2  # a wait is drawn from ±20 % of the schedule's, so failed endpoints spread out


def new_secret() -> str:
    """A fresh signing secret, ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def check_url(url: str) -> str:
    """``url`` when it may be an endpoint: http or https, a host, no user or password in it
    (it would be logged and shown), no fragment; ValueError saying why not."""
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"must be at most {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise ValueError("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError for a port out of range
    except ValueError as exc:
        raise ValueError(f"is not a URL ({exc})") from None
    del port
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError("must not carry a user name or password: the secret signs requests")
    if not parts.hostname:
        raise ValueError("must name a host")
    if parts.fragment:
        raise ValueError("must not have a #fragment")
    return url


def host_of(url: str) -> tuple[str, int]:
    """The host (without brackets) and port a checked URL points at."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname or "", port


def is_private(address: str) -> bool:
    """Whether an IP address is one a webhook must not reach by default: private, loopback,
    link-local, shared (100.64/10), multicast, reserved or unspecified; an IPv6 form of an
    IPv4 address counts as that address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    shared = isinstance(ip, ipaddress.IPv4Address) and ip in ipaddress.ip_network("100.64.0.0/10")
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or shared
    )


def check_event_types(types: Iterable[str] | None) -> str | None:
    """The event types as stored (space-separated, sorted), None for every event; ValueError
    naming one that is not ``call.<state>``."""
    if types is None:
        return None
    chosen = sorted({t.strip() for t in types if t.strip()})
    for name in chosen:
        if name not in EVENT_TYPES:
            raise ValueError(f"{name!r} is not one of {', '.join(EVENT_TYPES)}")
    if not chosen:
        raise ValueError("give at least one event type (or none at all for every event)")
    return " ".join(chosen)


def wanted(stored_types: str | None, state: str) -> bool:
    """Whether an endpoint with these stored event types takes an event of ``state``."""
    return stored_types is None or f"call.{state}" in stored_types.split()


def retry_delay(failures: int, delays: Sequence[float], draw: float) -> float | None:
    """Seconds to wait after an endpoint's ``failures``-th failure in a row (1 = the first),
    jittered by ``draw`` (uniform in [0, 1)); None past the schedule: give up (disable)."""
    if failures < 1 or failures > len(delays):
        return None
    return delays[failures - 1] * (1 - JITTER + 2 * JITTER * draw)


# RetailCRM (README, "RetailCRM"): the call's end as `hangupStatus` of a `hangup` event and as
# `result` of the uploaded call, from the customer's side (the CRM's "phone" is the
# customer); a customer never dialled (the agent did not answer) from the agent's side.
_HANGUP_STATUS = {
    SideOutcome.ANSWERED: "answered",
    SideOutcome.BUSY: "busy",
    SideOutcome.NO_ANSWER: "no answered",
    SideOutcome.CANCELED: "cancel",
    SideOutcome.CONGESTION: "failed",
    SideOutcome.FAILED: "failed",
    SideOutcome.UNKNOWN: "failed",
}
_UPLOAD_RESULT = {
    SideOutcome.ANSWERED: "answered",
    SideOutcome.BUSY: "busy",
    SideOutcome.NO_ANSWER: "no answer",
    SideOutcome.CANCELED: "failed",
    SideOutcome.CONGESTION: "failed",
    SideOutcome.FAILED: "failed",
    SideOutcome.UNKNOWN: "unknown",
}
HANGUP_STATUSES = frozenset(_HANGUP_STATUS.values())
UPLOAD_RESULTS = frozenset({"answered", "busy", "failed", "no answer", "not allowed", "unknown"})


def _deciding(sides: Sides | None) -> SideOutcome:
    if sides is None:
        return SideOutcome.UNKNOWN
    if sides.customer is not None:
        return sides.customer.outcome
    agent = sides.agent.outcome if sides.agent is not None else SideOutcome.UNKNOWN
    # The customer's phone never rang: the call failed for the customer, unless it was
    # hung up on purpose (canceled) or the originate itself failed.
    return agent if agent in (SideOutcome.CANCELED, SideOutcome.FAILED) else SideOutcome.FAILED


def hangup_status(sides: Sides | None) -> str:
    """RetailCRM's ``hangupStatus`` of an ended call."""
    return _HANGUP_STATUS[_deciding(sides)]


def upload_result(sides: Sides | None) -> str:
    """RetailCRM's ``result`` of an ended call in ``telephony/calls/upload``."""
    return _UPLOAD_RESULT[_deciding(sides)]
