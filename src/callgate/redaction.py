"""How secrets and phone numbers are shown wherever a person may read them (logs, CLI)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

# Query parameters whose value is a secret, and those holding a phone number.
SECRET_PARAMS = frozenset({"clientid", "client_id", "secret", "token", "password"})
PHONE_PARAMS = frozenset({"phone", "externalphone", "to"})


def mask_secret(secret: str | None) -> str:
    """At most the first 8 characters (as the legacy service's logs showed), never more
    than a quarter."""
    if not secret:
        return "-"
    shown = min(8, len(secret) // 4)
    return secret[:shown] + "…"


def mask_phone(phone: str | None) -> str:
    """Keep the first 4 and last 2 characters of numbers long enough to hide something."""
    if not phone:
        return "-"
    if len(phone) <= 6:
        return phone[:1] + "*" * (len(phone) - 1)
    return phone[:4] + "*" * (len(phone) - 6) + phone[-2:]


def redact_query(query: str) -> str:
    """A query string fit for a log line: secrets and phone numbers masked."""
    if not query:
        return ""
    pairs = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        lowered = key.lower()
        if lowered in SECRET_PARAMS:
            value = mask_secret(value)
        elif lowered in PHONE_PARAMS:
            value = mask_phone(value)
        pairs.append((key, value[:80]))
    return urlencode(pairs, safe="…*+/@")
