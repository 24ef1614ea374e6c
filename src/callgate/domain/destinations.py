"""Where an enterprise may call: its destination policy, and the check each call passes.

Pure: no I/O. Numbers are classified with libphonenumber's data (`phonenumbers`): the region
and the number type (premium rate, shared cost, VoIP, UAN, ...); a number without ``+`` is
read as dialled in the enterprise's country (`DestinationPolicy.region`), ``00`` being taken
as the international prefix everywhere besides the country's own (``810`` in Belarus).

A policy is stored as overrides (`PolicyOverrides`, every field optional): an enterprise's
own, then the global default's, then the shipped defaults below (`effective_policy`). The
deny rules always win; the allow lists, when given, must name the number's region or prefix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from functools import lru_cache

import phonenumbers
from phonenumbers import PhoneNumberType, shortnumberinfo

from callgate.errors import DestinationNotAllowed, InvalidInput
from callgate.redaction import mask_phone

EMERGENCY = "EMERGENCY"  # not one of libphonenumber's number types: its short-number data
# libphonenumber's number types by name, e.g. PREMIUM_RATE.
NUMBER_TYPES: dict[int, str] = {
    value: name
    for name, value in vars(PhoneNumberType).items()
    if name.isupper() and isinstance(value, int)
}
KINDS = frozenset({*NUMBER_TYPES.values(), EMERGENCY})
# Numbers every GSM phone treats as emergency calls whatever its country (3GPP TS 22.101:
# 112 and 911 always, 000, 08, 110, 118, 119 and 999 without a SIM): refused wherever the
# enterprise is, besides its own country's (libphonenumber's short-number data).
UNIVERSAL_EMERGENCY = frozenset({"112", "911", "999", "000", "08", "110", "118", "119"})
# International satellite and network ranges (ITU-T E.164 shared codes) and the international
# premium rate range +979: billed far above any ordinary destination, the usual toll fraud.
SATELLITE_AND_NETWORK = ("+870", "+871", "+872", "+873", "+874", "+881", "+882", "+883", "+979")
MAX_DIGITS = 15  # E.164's longest number

_PREFIX = re.compile(r"\+?[0-9]{1,15}", re.ASCII)
_EXTENSION_RANGE = re.compile(r"([0-9]{1,32})(?:-([0-9]{1,32}))?", re.ASCII)
_REGIONS = frozenset(phonenumbers.SUPPORTED_REGIONS) | {"001"}  # 001: non-geographic


@dataclass(frozen=True, slots=True)
class PolicyOverrides:
    """A stored policy: each field as text (lists space-separated), None = inherited."""

    region: str | None = None
    allowed_regions: str | None = None
    allowed_prefixes: str | None = None
    denied_prefixes: str | None = None
    denied_types: str | None = None
    max_length: int | None = None
    extensions: str | None = None


POLICY_FIELDS = tuple(field.name for field in fields(PolicyOverrides))

SHIPPED = PolicyOverrides(
    allowed_regions="",
    allowed_prefixes="",
    denied_prefixes=" ".join(SATELLITE_AND_NETWORK),
    denied_types=f"PREMIUM_RATE SHARED_COST {EMERGENCY}",
    max_length=MAX_DIGITS,
    extensions="",
)


@dataclass(frozen=True, slots=True)
class Destination:
    """A number as the policy sees it."""

    e164: str | None  # "+<country code><national number>", when it can be read
    region: str | None  # e.g. "BY"; "001" for the non-geographic ranges
    kind: str  # a `NUMBER_TYPES` name or EMERGENCY


@dataclass(frozen=True, slots=True)
class DestinationPolicy:
    region: str  # the enterprise's country: numbers without "+" are read in it
    allowed_regions: frozenset[str] = frozenset()  # empty: any (unless prefixes are given)
    allowed_prefixes: tuple[str, ...] = ()
    denied_prefixes: tuple[str, ...] = ()  # "+882": the international form; "8": as dialled
    denied_types: frozenset[str] = frozenset()
    max_length: int = MAX_DIGITS  # digits of the number as dialled
    extensions: tuple[tuple[str, str], ...] = ()  # inclusive ranges; empty: any extension

    def check(self, extension: str, number: str) -> None:
        """DestinationNotAllowed saying why (the number masked) unless the call may go."""
        reason = self.refusal(extension, number)
        if reason is not None:
            raise DestinationNotAllowed(reason)

    def refusal(self, extension: str, number: str) -> str | None:
        """Why ``extension`` may not call the validated ``number``, or None."""
        if self.extensions and not any(_within(extension, r) for r in self.extensions):
            return f"extension {extension} is not one of the enterprise's extensions"
        shown = mask_phone(number)
        if len(number.lstrip("+")) > self.max_length:
            return f"{shown} is longer than {self.max_length} digits"
        found = classify(number, self.region)
        if found.kind in self.denied_types:
            return f"{shown} is {_article(found.kind)} number"
        for prefix in self.denied_prefixes:
            if _starts(number, found, prefix):
                return f"{shown} is in the denied range {prefix}"
        if (self.allowed_regions or self.allowed_prefixes) and not self._allows(number, found):
            return f"{shown} is outside the allowed regions and prefixes"
        return None

    def _allows(self, number: str, found: Destination) -> bool:
        if found.region in self.allowed_regions:
            return True
        return any(_starts(number, found, prefix) for prefix in self.allowed_prefixes)


@lru_cache(maxsize=4096)  # pure; a CRM calls the same numbers again and again
def classify(number: str, home: str) -> Destination:
    """The region and type of a validated number (``+`` and digits, or digits) dialled from
    the region ``home``."""
    if number.startswith("00"):
        number = "+" + number[2:]
    elif not number.startswith("+") and (
        number in UNIVERSAL_EMERGENCY or shortnumberinfo.is_emergency_number(number, home)
    ):
        return Destination(None, home, EMERGENCY)
    try:
        parsed = phonenumbers.parse(number, None if number.startswith("+") else home)
    except phonenumbers.NumberParseException:
        return Destination(None, None, NUMBER_TYPES[PhoneNumberType.UNKNOWN])
    kind = NUMBER_TYPES.get(phonenumbers.number_type(parsed), "UNKNOWN")
    if (
        kind == "UNKNOWN"
        and not number.startswith("+")
        and shortnumberinfo.expected_cost_for_region(parsed, home)
        == shortnumberinfo.ShortNumberCost.PREMIUM_RATE
    ):
        kind = "PREMIUM_RATE"  # a premium short number (votes, SMS services)
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return Destination(e164, phonenumbers.region_code_for_number(parsed), kind)


@lru_cache(maxsize=1024)  # the same few stored policies at every call
def effective_policy(
    own: PolicyOverrides, default: PolicyOverrides, region: str
) -> DestinationPolicy:
    """An enterprise's policy: its own values, else the global default's, else the shipped
    ones (`SHIPPED`; ``region`` is the configured default country)."""

    def pick(name: str) -> str:
        found = (getattr(own, name), getattr(default, name), getattr(SHIPPED, name))
        return str(next(value for value in found if value is not None))

    max_length = next(v for v in (own.max_length, default.max_length, SHIPPED.max_length) if v)
    return DestinationPolicy(
        region=own.region or default.region or region,
        allowed_regions=frozenset(pick("allowed_regions").split()),
        allowed_prefixes=tuple(pick("allowed_prefixes").split()),
        denied_prefixes=tuple(pick("denied_prefixes").split()),
        denied_types=frozenset(pick("denied_types").split()),
        max_length=max_length,
        extensions=tuple(_range(part) for part in pick("extensions").split()),
    )


def check_overrides(changes: dict[str, str | int | None]) -> dict[str, str | int | None]:
    """Changes to a stored policy in their stored form (lists space-separated, names upper
    case); InvalidInput naming the first bad field. None resets a field (inherited)."""
    checked: dict[str, str | int | None] = {}
    for name, value in changes.items():
        if name not in POLICY_FIELDS:
            raise InvalidInput(name, "is not a policy field")
        if value is None or name == "max_length":
            if isinstance(value, int) and not 1 <= value <= MAX_DIGITS:
                raise InvalidInput(name, f"must be 1 to {MAX_DIGITS}")
            checked[name] = value
            continue
        items = str(value).replace(",", " ").split()
        checked[name] = " ".join(_checked_item(name, item) for item in items)
    return checked


def check_region(value: str) -> str:
    """A region code libphonenumber knows (ValueError if not), in upper case."""
    upper = value.upper()
    if upper not in _REGIONS:
        raise ValueError(f"{value!r} is not a region code (ISO 3166 alpha-2, e.g. BY, DE, US)")
    return upper


def describe(policy: DestinationPolicy) -> str:
    """A policy on one line, for the operator."""
    parts = [f"region={policy.region}"]
    if policy.allowed_regions or policy.allowed_prefixes:
        allowed = sorted(policy.allowed_regions) + list(policy.allowed_prefixes)
        parts.append("allow=" + ",".join(allowed))
    denied = sorted(policy.denied_types) + list(policy.denied_prefixes)
    parts.append("deny=" + (",".join(denied) or "-"))
    parts.append(f"max={policy.max_length}")
    if policy.extensions:
        shown = (lo if lo == hi else f"{lo}-{hi}" for lo, hi in policy.extensions)
        parts.append("extensions=" + ",".join(shown))
    return " ".join(parts)


def _checked_item(name: str, item: str) -> str:
    if name in ("region", "allowed_regions"):
        try:
            return check_region(item)
        except ValueError as exc:
            raise InvalidInput(name, str(exc)) from None
    if name == "denied_types":
        if item.upper() not in KINDS:
            raise InvalidInput(name, f"{item!r} is not one of {', '.join(sorted(KINDS))}")
        return item.upper()
    if name == "extensions":
        try:
            _range(item)
        except ValueError as exc:
            raise InvalidInput(name, str(exc)) from None
        return item
    if not _PREFIX.fullmatch(item):
        raise InvalidInput(name, f"{item!r} is not a prefix ('+' optional, then 1 to 15 digits)")
    return item


def _range(item: str) -> tuple[str, str]:
    """``"100-199"`` or ``"150"`` as inclusive bounds of equal length (ValueError if not)."""
    found = _EXTENSION_RANGE.fullmatch(item)
    if found is None:
        raise ValueError(f"{item!r} is not an extension or a range such as 100-199")
    low, high = found.group(1), found.group(2) or found.group(1)
    if len(low) != len(high) or low > high:
        raise ValueError(f"{item!r}: a range's bounds have as many digits, the lower first")
    return low, high


def _within(extension: str, bounds: tuple[str, str]) -> bool:
    low, high = bounds  # equal lengths: comparing the text compares the numbers
    return len(extension) == len(low) and low <= extension <= high


def _starts(number: str, found: Destination, prefix: str) -> bool:
    if prefix.startswith("+"):
        return found.e164 is not None and found.e164.startswith(prefix)
    return number.startswith(prefix)


def _article(kind: str) -> str:
    words = kind.lower().replace("_", " ")
    return ("an " if words[0] in "aeiou" else "a ") + words
