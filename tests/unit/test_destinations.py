"""The destination policy (domain/destinations.py): what the shipped policy refuses, how an
enterprise's own values and the global default's combine, and what a refusal says."""

from __future__ import annotations

from typing import Any

import pytest

from callgate.domain.destinations import (
    DestinationPolicy,
    PolicyOverrides,
    check_overrides,
    classify,
    describe,
    effective_policy,
)
from callgate.errors import DestinationNotAllowed, InvalidInput

NONE = PolicyOverrides()
SHIPPED = effective_policy(NONE, NONE, "BY")


def policy(**own: Any) -> DestinationPolicy:
    return effective_policy(PolicyOverrides(**own), NONE, "BY")


def refused(rules: DestinationPolicy, number: str) -> str:
    """Why ``rules`` refuse extension 150 calling ``number`` (it must)."""
    reason = rules.refusal("150", number)
    assert reason is not None, number
    return reason


@pytest.mark.parametrize(
    ("number", "why"),
    [
        ("+19005551234", "is a premium rate number"),  # US 900
        ("09001234567", None),  # national in BY: not a GB premium number
        ("+34901123456", "is a shared cost number"),  # Spain's 901
        ("+870773111111", "is in the denied range +870"),  # Inmarsat
        ("+881612345678", "is in the denied range +881"),  # GMSS satellite
        ("+882123456789", "is in the denied range +882"),
        ("00882123456789", "is in the denied range +882"),  # national form, ITU's 00
        ("810882123456789", "is in the denied range +882"),  # Belarus's own 8-10
        ("+883510001234567", "is in the denied range +883"),
        ("+979123456789", "is a premium rate number"),  # international premium rate
        ("112", "is an emergency number"),
        ("911", "is an emergency number"),
        ("999", "is an emergency number"),
        ("103", "is an emergency number"),  # BY's ambulance, from libphonenumber's data
        ("+375296254070", None),
        ("80296254070", None),  # the same mobile, dialled nationally in Belarus
        ("+441234567890", None),
        ("150", None),  # a short internal number
    ],
)
def test_the_shipped_policy(number: str, why: str | None) -> None:
    if why is None:
        assert SHIPPED.refusal("150", number) is None
    else:
        assert refused(SHIPPED, number).endswith(why)


def test_a_refusal_never_shows_the_whole_number() -> None:
    with pytest.raises(DestinationNotAllowed) as caught:
        SHIPPED.check("150", "+19005551234")
    assert "+19005551234" not in caught.value.message
    assert caught.value.message.startswith("+190******34 ")
    assert caught.value.code == "destination_not_allowed"


def test_national_numbers_are_read_in_the_enterprise_region() -> None:
    """09001234567 is premium rate in Great Britain, not in Belarus."""
    british = policy(region="GB")
    assert refused(british, "09001234567").endswith("is a premium rate number")
    assert classify("09001234567", "GB").kind == "PREMIUM_RATE"
    assert classify("09001234567", "GB").e164 == "+449001234567"
    assert SHIPPED.refusal("150", "09001234567") is None


def test_allowed_regions_and_prefixes() -> None:
    """With either list given, a number must be in an allowed region or start with an allowed
    prefix; the deny rules still win."""
    local = policy(allowed_regions="BY")
    assert local.refusal("150", "+375296254070") is None
    assert local.refusal("150", "80296254070") is None
    assert refused(local, "+441234567890") == (
        "+441*******90 is outside the allowed regions and prefixes"
    )
    both = policy(allowed_regions="BY", allowed_prefixes="+4420")
    assert both.refusal("150", "+442071234567") is None
    assert both.refusal("150", "+441234567890") is not None
    dialled = policy(allowed_prefixes="8029")  # without "+": as dialled
    assert dialled.refusal("150", "80296254070") is None
    assert dialled.refusal("150", "+375296254070") is not None
    premium = policy(allowed_regions="US")
    assert refused(premium, "+19005551234").endswith("premium rate number")


def test_denied_prefixes_and_types_replace_the_shipped_ones() -> None:
    open_policy = policy(denied_prefixes="", denied_types="")
    assert open_policy.refusal("150", "+19005551234") is None
    assert open_policy.refusal("150", "+882123456789") is None
    voip = policy(denied_types="VOIP PREMIUM_RATE")
    assert voip.refusal("150", "+447911123456") is None
    assert classify("+445612345678", "BY").kind == "VOIP"
    assert refused(voip, "+445612345678").endswith("a voip number")
    assert voip.refusal("150", "112") is None


def test_max_length() -> None:
    short = policy(max_length=11)
    assert short.refusal("150", "80296254070") is None
    assert refused(short, "+375296254070") == "+375*******70 is longer than 11 digits"


def test_extension_ranges() -> None:
    """Only the enterprise's own extensions may ring first: another tenant's on a shared host
    cannot be used."""
    own = policy(extensions="100-199 250")
    assert own.refusal("150", "+375296254070") is None
    assert own.refusal("250", "+375296254070") is None
    for other in ("200", "99", "1500", "251"):
        why = own.refusal(other, "+375296254070")
        assert why == f"extension {other} is not one of the enterprise's extensions"


def test_own_values_then_the_default_then_the_shipped_ones() -> None:
    default = PolicyOverrides(region="DE", max_length=12)
    own = PolicyOverrides(max_length=13)
    combined = effective_policy(own, default, "BY")
    assert (combined.region, combined.max_length) == ("DE", 13)
    assert combined.denied_types == SHIPPED.denied_types
    assert effective_policy(NONE, NONE, "GB").region == "GB"  # the configured default region


def test_stored_changes_are_checked_and_normalised() -> None:
    changes: dict[str, str | int | None] = {
        "allowed_regions": "by, de",
        "denied_types": "premium_rate",
        "extensions": "100-199",
    }
    checked = check_overrides(changes)
    assert checked == {
        "allowed_regions": "BY DE",
        "denied_types": "PREMIUM_RATE",
        "extensions": "100-199",
    }
    assert check_overrides({"region": None}) == {"region": None}
    bad: list[tuple[str, str | int]] = [
        ("allowed_regions", "XX"),
        ("denied_types", "EXPENSIVE"),
        ("denied_prefixes", "+88a"),
        ("extensions", "199-100"),
        ("extensions", "10-199"),
        ("max_length", 16),
    ]
    for field, value in bad:
        with pytest.raises(InvalidInput) as caught:
            check_overrides({field: value})
        assert caught.value.field == field


def test_describe_names_every_rule() -> None:
    shown = describe(effective_policy(PolicyOverrides(extensions="100-199 250"), NONE, "BY"))
    assert shown.startswith("region=BY deny=EMERGENCY,PREMIUM_RATE,SHARED_COST,+870")
    assert shown.endswith("max=15 extensions=100-199,250")
