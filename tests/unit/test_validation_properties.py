"""Property tests of the allow-lists: any text is either refused naming its field, or safe.

Each property checks the validator against an oracle written independently of its regex
(plain character sets and lengths), so a mistake in one is not repeated in the other. The
"accepted" side is also proven reachable, so a validator refusing everything cannot pass.
"""

from __future__ import annotations

import re
import shlex
import string
from collections.abc import Callable

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from callgate.errors import InvalidInput
from callgate.pbx import commands
from callgate.validation import (
    MAX_RAW_LENGTH,
    is_plausible_secret,
    normalize_phone,
    validate_extension,
)

ASCII_DIGITS = frozenset(string.digits)
SEPARATORS = " -.()"
# Characters a shell or Asterisk's CLI/dialplan would give a meaning to (argument separators
# `,` `|`, `@` `/` of channel names, quotes, expansions, control characters, whitespace).
METACHARACTERS = frozenset(";|&$`'\"\\<>(){}[]*?~#!%^=,@/ \t\r\n\x00\x0b\x0c")
# The only command shape a validated code and phone may produce; everything outside the two
# groups (and the ring timeout) is fixed text of the template.
TEMPLATE = re.compile(
    r"channel originate Local/(?P<code>[^@]*)@inoffice application Dial "
    r"Local/(?P<phone>[^@]*)@inoffice(?:,(?P<timeout>[0-9]+))?",
    re.ASCII,
)

# Awkward characters mixed with ASCII digits, so that the accepted region is reached often.
_TRICKY = [
    *SEPARATORS, *"+;|&$`'\"\\,@/*\t\r\n\x00\x7f",
    "\u0661", "\u06f5", "\uff11", "\u00b2", "\u2007", "\u00a0", "\u200b", "\U0001d7ce", "é",
]  # fmt: skip
tricky = st.sampled_from(_TRICKY) | st.characters(categories=["Nd", "No", "Zs", "Cc"])
near_valid = st.tuples(
    st.sampled_from(["", "+", " +", "+0", "00"]),
    st.text(alphabet=st.sampled_from(string.digits) | tricky, max_size=24),
).map("".join)
# Digits of any script, which Python's `\d` and str.isdigit() would let through.
lookalikes = st.tuples(
    st.sampled_from(["", "+"]),
    st.text(
        st.characters(categories=["Nd"]) | st.sampled_from(string.digits), min_size=2, max_size=16
    ),
).map("".join)
valid = st.from_regex(r"\+[1-9][0-9]{6,14}|[0-9]{2,15}", fullmatch=True)
# A valid value with one awkward character put in: at the start, inside, or at the very end
# (where a regex's `$` would have let a newline through).
_SHARP = ["\n", "\r", "\x00", "\t", ";", "+", "\u0661", "\uff11", "\U0001d7ce", "\u00a0"]


def _insert(parts: tuple[str, str, int]) -> str:
    value, char, at = parts
    at = len(value) if at < 0 else at
    return value[:at] + char + value[at:]


one_flaw = st.tuples(valid, st.sampled_from(_SHARP) | tricky, st.sampled_from([0, 1, 3, -1])).map(
    _insert
)
# Bytes as a raw query or header might carry them, surrogate-escaped like os.fsdecode does.
byteish = st.binary(max_size=48).map(lambda b: b.decode("utf-8", "surrogateescape"))
very_long = st.integers(MAX_RAW_LENGTH - 2, 5000).map(lambda n: "1" * n)
anything = st.one_of(
    st.text(),
    one_flaw,  # listed twice: the boundary of the allow-list is where mistakes hide
    near_valid,
    lookalikes,
    valid,
    one_flaw,
    byteish,
    very_long,
    st.integers(0, 10**17).map(str),
)


# Known-dangerous values, tried on every run whatever the random draw.
EDGES = [
    "", " ", "+", "++375296254070", "+0375296254070", "150\n", "\n150", "150\r\n", "150\x00",
    "+375296254070\n", "+375296254070\x00", "375296254070;id", "$(id)", "150`id`",
    "\u0661\u0665\u0660", "\uff11\uff15\uff10", "+\u0663\u0667\u0665296254070", "1" * 65,
    "1" * 10_000, "+375 (29) 625-40-70", "Local/150@inoffice", "150,1", "150&",
]  # fmt: skip


def with_edges(test: Callable[..., None]) -> Callable[..., None]:
    """Add every EDGES value as an explicit example of a one-argument property."""
    for value in EDGES:
        test = example(value)(test)
    return test


def _phone_oracle(value: str) -> str | None:
    """What normalize_phone should return, written with sets and lengths instead of a regex."""
    if len(value) > MAX_RAW_LENGTH:
        return None
    compact = "".join(c for c in value if c not in SEPARATORS)
    digits = compact.removeprefix("+")
    if not digits or not set(digits) <= ASCII_DIGITS:
        return None
    if compact.startswith("+"):
        return compact if 7 <= len(digits) <= 15 and digits[0] != "0" else None
    return compact if 3 <= len(digits) <= 15 else None


@settings(max_examples=400)
@given(anything)
@with_edges
def test_code_is_refused_naming_the_field_or_plain_ascii_digits(value: str) -> None:
    """validate_extension: InvalidInput('code'), or the value itself, 2..6 ASCII digits."""
    expected_ok = 2 <= len(value) <= 6 and set(value) <= ASCII_DIGITS
    try:
        result = validate_extension(value)
    except InvalidInput as exc:
        assert exc.field == "code"
        assert not expected_ok, "a valid extension was refused"
        return
    assert expected_ok, "an invalid extension was accepted"
    assert result == value
    assert result.isascii()


@settings(max_examples=400)
@given(anything)
@with_edges
def test_phone_is_refused_naming_the_field_or_normalised_ascii(value: str) -> None:
    """normalize_phone: InvalidInput('phone'), or exactly the oracle's compact number."""
    expected = _phone_oracle(value)
    try:
        result = normalize_phone(value)
    except InvalidInput as exc:
        assert exc.field == "phone"
        assert expected is None, "a valid number was refused"
        return
    assert result == expected
    assert result.isascii()
    assert set(result) <= ASCII_DIGITS | {"+"}
    assert "+" not in result[1:]


@settings(max_examples=400)
@given(st.one_of(anything, st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7F))))
@with_edges
def test_secret_plausibility_is_printable_ascii_without_spaces(value: str) -> None:
    """is_plausible_secret: true exactly for 1..255 characters of ASCII 0x21..0x7e."""
    expected = 1 <= len(value) <= 255 and all(0x21 <= ord(c) <= 0x7E for c in value)
    assert is_plausible_secret(value) is expected
    if expected:
        assert value.isascii()
        assert not set(value) & {" ", "\t", "\n", "\r", "\x00"}


def test_secret_plausibility_refuses_none_and_overlong() -> None:
    """None, the empty string and 256 characters are not secrets that can be stored."""
    assert not is_plausible_secret(None)
    assert not is_plausible_secret("")
    assert is_plausible_secret("x" * 255)
    assert not is_plausible_secret("x" * 256)


@settings(max_examples=500)
@given(anything, anything, st.none() | st.integers(1, 600))
@example("150", "+375296254070\n", None)
@example("150", "80296254070\n", None)
@example("150\n", "+375296254070", None)
@example("150", "\u0663\u0667\u0665296254070", 25)
@example("150", "375296254070,1", None)
def test_originate_command_has_no_metacharacter_outside_the_template(
    code: str, phone: str, ring_timeout: int | None
) -> None:
    """originate(): InvalidInput naming the first bad field, or the fixed template around
    ASCII digits (and a leading `+`) only, which the shell line carries as one word."""
    code_ok = 2 <= len(code) <= 32 and set(code) <= ASCII_DIGITS
    expected_phone = _phone_oracle(phone)
    try:
        command = commands.originate(code, phone, "inoffice", ring_timeout=ring_timeout)
    except InvalidInput as exc:
        # The code is checked first: it is the field named whenever it is bad.
        assert exc.field == ("phone" if code_ok else "code")
        assert not code_ok or expected_phone is None
        return
    assert code_ok and expected_phone is not None
    assert command.isascii()
    parts = TEMPLATE.fullmatch(command)
    assert parts is not None, "the command left the template"
    assert parts["code"] == code and parts["phone"] == expected_phone
    assert parts["timeout"] == (None if ring_timeout is None else str(ring_timeout))
    for variable in (parts["code"], parts["phone"]):
        assert not set(variable) & METACHARACTERS
    # The second wall: the shell line gives asterisk exactly this command as one argument.
    assert shlex.split(commands.rx_shell("asterisk", [command])) == ["asterisk", "-rx", command]


@given(
    st.from_regex(r"[0-9]{2,6}", fullmatch=True),
    st.from_regex(r"\+[1-9][0-9]{6,14}|[0-9]{3,15}", fullmatch=True),
    st.lists(st.sampled_from(SEPARATORS), max_size=4),
)
def test_valid_values_are_accepted_unchanged(code: str, phone: str, noise: list[str]) -> None:
    """The accepted side is reachable: valid values pass, separators are only removed."""
    assume(len(phone) + len(noise) <= MAX_RAW_LENGTH)
    spaced = phone[:1] + "".join(noise) + phone[1:]
    assert validate_extension(code) == code
    assert normalize_phone(spaced) == phone
    assert commands.originate(code, spaced, "inoffice").endswith(f"Local/{phone}@inoffice")


@pytest.mark.parametrize("ring_timeout", [0, 601, -1])
def test_originate_refuses_out_of_range_ring_timeouts(ring_timeout: int) -> None:
    """A ring timeout outside 1..600 s never reaches Dial's argument list."""
    with pytest.raises(ValueError, match="ring_timeout"):
        commands.originate("150", "+375296254070", "inoffice", ring_timeout=ring_timeout)
