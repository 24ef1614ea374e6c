"""The checks of a new enterprise's fields (a row of the legacy ``enterprises`` table).

Pure: no I/O. The secret's own check is `validation.is_plausible_secret`, the one every path
uses (a request's secret, an operator's new one).
"""

from __future__ import annotations

import re

from callgate.domain.hosts import host_address
from callgate.errors import ConfigurationError, InvalidInput
from callgate.validation import is_plausible_secret

_NUMBER = re.compile(r"[A-Za-z0-9_-]{1,32}", re.ASCII)


def check_enterprise(number: str, name: str, ip: str, secret: str) -> str:
    """Check a new enterprise's fields (InvalidInput naming the first bad one); ``ip`` in its
    canonical form."""
    if not _NUMBER.fullmatch(number):
        raise InvalidInput("number", "must be 1 to 32 of A-Z a-z 0-9 _ -")
    if not name.strip() or len(name) > 255 or not name.isprintable():
        raise InvalidInput("name", "must be 1 to 255 printable characters")
    try:
        address = host_address(ip)
    except ConfigurationError as exc:
        raise InvalidInput("ip", exc.message) from None
    if not is_plausible_secret(secret):
        raise InvalidInput("secret", "must be 1 to 255 printable ASCII characters, no spaces")
    return address
