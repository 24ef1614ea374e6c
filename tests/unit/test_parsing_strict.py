"""The strict channel parser: only whole records are channels, and a caller's text cut by a
newline can neither forge a channel nor make a listing look complete."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callgate.pbx import parsing
from callgate.pbx.parsing import Channel, Listing, parse_channels
from tests.support import transcripts

AGENT = (
    "Local/150@inoffice-00000000;1!inoffice!150!1!Up!Dial!LOCAL/+375296254070@inoffice!!!!3!15!"
    "7bd28ea7-4495-4646-97e4-1bd9928c605c!1795707803.0"
)
AGENT_2 = "Local/150@inoffice-00000000;2!inoffice!150!5!Up!Wait!60!!!!3!15!!1795707803.1"
# The issue's forgery, up to its caller id: the rest of the real record completes the line.
FORGED = "Local/150@inoffice-00000099;1!inoffice!150!1!Up!Dial!Local/+375296254070@inoffice!150"
FORGED_NAME = "Local/150@inoffice-00000099;1"


OUTSIDER = "PJSIP/trunk-00000007"


def _caller_line(caller_id: str, data: str = "60", uniqueid: str = "1795707900.7") -> str:
    """An outsider's channel whose caller id (or data) the outsider chose."""
    return f"{OUTSIDER}!from-outside!s!2!Up!Wait!{data}!{caller_id}!!!3!4!!{uniqueid}"


def _name(line: str) -> str:
    return line.split("!")[0]


def _loose(output: str) -> list[tuple[str, ...]]:
    """What the parser before this one made of a listing: every line of 14 or more fields."""
    found = []
    for line in output.splitlines():
        parts = line.split("!")
        if len(parts) >= 14:
            parts = [*parts[:6], "!".join(parts[6 : len(parts) - 7]), *parts[-7:]]
            found.append(tuple(parts))
    return found


def _fields(channel: Channel) -> tuple[str, ...]:
    return (
        channel.name,
        channel.context,
        channel.extension,
        channel.priority,
        channel.state,
        channel.application,
        channel.data,
        channel.caller_id,
        channel.accountcode,
        channel.peeraccount,
        channel.amaflags,
        str(channel.duration),
        channel.bridge_id,
        channel.uniqueid,
    )


def _recorded_listings() -> list[str]:
    listings = [e.output for e in transcripts.exchanges() if e.command.endswith("concise")]
    for name in ("call-lifecycle-answered.txt", "call-lifecycle-agent-no-answer.txt"):
        listings += [listing for _, listing in transcripts.snapshots(name)]
    return listings


def test_every_recorded_listing_parses_to_the_same_channels_and_is_conclusive() -> None:
    listings = _recorded_listings()
    assert len(listings) > 10 and sum(listing.count("\n") for listing in listings) > 30
    for listing in listings:
        parsed = parse_channels(listing)
        assert [_fields(channel) for channel in parsed] == _loose(listing)
        assert parsed.conclusive and parsed.fragments == 0


@pytest.mark.parametrize("state", [*parsing.CHANNEL_STATES, "Unknown (12)"])
def test_every_state_asterisk_names(state: str) -> None:
    line = f"PJSIP/a-00000001!c!1!1!{state}!Dial!x!!!!3!7!!1.1\n"
    (channel,) = parse_channels(line)
    assert channel.state == state


@pytest.mark.parametrize(
    "line",
    [
        "Local/150@inoffice-00000000;1!inoffice!150!1!Answered!Dial!x!!!!3!7!!1.1",  # state
        "Local/150@inoffice-00000000;1!inoffice!150!one!Up!Dial!x!!!!3!7!!1.1",  # priority
        "Local/150@inoffice-00000000;1!inoffice!150!1!Up!Dial!x!!!!3!7s!!1.1",  # duration
        "Local/150@inoffice-00000000;1!inoffice!150!1!Up!Dial!x!!!!A!7!!1.1",  # amaflags
        "Local/150@inoffice-00000000;1!inoffice!150!1!Up!Dial!x!!!!3!7!bridge-1!1.1",  # bridge
        "Local/150@inoffice-00000000;1!inoffice!150!1!Up!Dial!x!!!!3!7!!my-call",  # uniqueid
        "Local/150@inoffice-00000000;1!inoffice!150!1!Up!!x!!!!3!7!!1.1",  # no application
        "Local 150@inoffice-00000000;1!inoffice!150!1!Up!Dial!x!!!!3!7!!1.1",  # no Tech/
        "Local/150 @inoffice-00000000;1!inoffice!150!1!Up!Dial!x!!!!3!7!!1.1",  # space in name
        "Local/150@inoffice-00000000;1!inoffice!150!1!Up!Dial!x!!!3!7!!1.1",  # 13 fields
        "Failed to retrieve cached channels",  # Asterisk's own complaint: not a listing
        "",
    ],
)
def test_a_line_that_is_not_a_whole_record_is_a_fragment(line: str) -> None:
    parsed = parse_channels(line + "\n")
    assert parsed == [] and parsed.fragments == 1 and not parsed.conclusive


def test_asterisk_made_uniqueids_and_uuid_bridges() -> None:
    """A system name before the uniqueid (asterisk.conf `systemname`) and a bridge id."""
    (channel,) = parse_channels(AGENT.replace("!1795707803.0", "!pbx-7.example-1795707803.0\n"))
    assert channel.uniqueid == "pbx-7.example-1795707803.0"
    assert channel.bridge_id == "7bd28ea7-4495-4646-97e4-1bd9928c605c"


def test_a_listing_cut_short_ends_in_a_fragment() -> None:
    """A last line without its newline is not known to be whole."""
    parsed = parse_channels(AGENT + "\n" + AGENT_2)
    assert parsed == [] and parsed.fragments == 1  # the agent's line touches the fragment


def test_the_forged_channel_of_the_issue_is_rejected() -> None:
    """A caller id `evil\\nLocal/150@…;1!inoffice!150!1!Up!Dial!…` cuts its record in two:
    the first part is a fragment, the second (the forgery, completed by the rest of the real
    record) is whole but next to it, so not trusted; the listing says it had a fragment."""
    listing = "\n".join([AGENT, _caller_line("evil\n" + FORGED), AGENT_2]) + "\n"
    parsed = parse_channels(listing)
    assert FORGED_NAME not in [channel.name for channel in parsed]
    assert not parsed.conclusive
    # The lines next to the fragment are not trusted either (one of them is the agent's):
    # only a conclusive listing may end a call whose channels it does not show.
    assert [channel.name for channel in parsed] == [_name(AGENT_2)]
    assert parse_channels(listing, name_prefix="Local/150@inoffice-000000") == [parsed[0]]
    assert parse_channels(listing, name_prefix=FORGED_NAME) == []


@pytest.mark.parametrize("where", ["first", "last"])
def test_a_forgery_at_either_end_of_the_listing(where: str) -> None:
    outsider = _caller_line("x\n" + FORGED)
    lines = [outsider, AGENT, AGENT_2] if where == "first" else [AGENT, AGENT_2, outsider]
    parsed = parse_channels("\n".join(lines) + "\n")
    assert FORGED_NAME not in [channel.name for channel in parsed] and not parsed.conclusive


def test_a_forgery_in_the_applications_data() -> None:
    """The data is free text too (a dialplan that passes on what a caller sent)."""
    listing = _caller_line("", data="60\n" + FORGED) + "\n" + AGENT_2 + "\n"
    parsed = parse_channels(listing)
    assert [channel.name for channel in parsed] == [_name(AGENT_2)] and parsed.fragments == 1


@pytest.mark.parametrize("separator", ["\r", "\x0b", "\x0c", "\x1c", "\x1e", "\x85", "\u2028"])
def test_only_a_newline_ends_a_line(separator: str) -> None:
    """`str.splitlines` would also cut at these: the forgery would stand on a line of its own
    (with a whole record on each side). Asterisk's lines end at `\\n` only."""
    listing = "\n".join([AGENT, _caller_line("x" + separator + FORGED), AGENT_2]) + "\n"
    parsed = parse_channels(listing)
    assert [channel.name for channel in parsed] == [_name(AGENT), OUTSIDER, _name(AGENT_2)]
    assert parsed.conclusive


def test_a_listing_is_still_a_list() -> None:
    """Callers that take a list of channels keep working."""
    parsed = parse_channels(AGENT + "\n")
    assert isinstance(parsed, list) and isinstance(parsed, Listing)
    assert parsed == [parse_channels(AGENT + "\n")[0]] and Listing().conclusive


# Generated records: free text where Asterisk allows it (data may hold "!"), fixed shapes
# elsewhere. A newline never occurs inside a generated record.
_TEXT = st.text(st.characters(exclude_characters="\n!", exclude_categories=["Cs"]))
_DATA = st.text(st.characters(exclude_characters="\n", exclude_categories=["Cs"]))
_NAME = st.from_regex(r"(Local|PJSIP|SIP|IAX2)/[A-Za-z0-9+@._;-]{1,30}", fullmatch=True)
_RECORDS = st.lists(
    st.tuples(
        _NAME,
        _TEXT,
        _TEXT,
        st.integers(0, 999),
        st.sampled_from(parsing.CHANNEL_STATES),
        st.from_regex(r"[A-Za-z0-9()]{1,12}", fullmatch=True),
        _DATA,
        _TEXT,
        st.integers(0, 99_999),
        st.sampled_from(["", "7bd28ea7-4495-4646-97e4-1bd9928c605c"]),
        st.integers(1_700_000_000, 1_900_000_000),
        st.integers(0, 99_999),
    ),
    max_size=6,
)


def _line(record: tuple[object, ...]) -> str:
    name, context, exten, priority, state, app, data, caller, duration, bridge, epoch, n = record
    return (
        f"{name}!{context}!{exten}!{priority}!{state}!{app}!{data}!{caller}!!!3!{duration}!"
        f"{bridge}!{epoch}.{n}"
    )


@given(_RECORDS)
def test_generated_listings_parse_back(records: list[tuple[object, ...]]) -> None:
    listing = "".join(_line(record) + "\n" for record in records)
    parsed = parse_channels(listing)
    assert parsed.conclusive
    assert [_fields(channel) for channel in parsed] == [
        (
            *_line(record).split("!")[:6],
            *(str(record[6]), str(record[7]), "", "", "3", str(record[8]), str(record[9])),
            f"{record[10]}.{record[11]}",
        )
        for record in records
    ]


@given(
    _RECORDS.filter(bool),
    st.data(),
    st.lists(_TEXT, min_size=1, max_size=4),
    st.sampled_from([FORGED, AGENT, AGENT_2, "x!!!3!5!!1.1", "", "end"]),
)
def test_a_caller_id_cut_by_newlines_forges_nothing(
    records: list[tuple[object, ...]], data: st.DataObject, pieces: list[str], tail: str
) -> None:
    """A caller id made of newlines and any text, `!` only after its last newline, put into
    one record (whose data holds no `!`): every channel parsed is one of the other records
    untouched, and the listing is inconclusive."""
    at = data.draw(st.integers(0, len(records) - 1))
    caller_id = "\n".join([*pieces, tail])
    injected = list(records[at])
    injected[6] = str(injected[6]).replace("!", "")
    injected[7] = caller_id
    lines = [_line(record) for record in records]
    lines[at] = _line(tuple(injected))
    listing = "".join(line + "\n" for line in lines)
    parsed = parse_channels(listing)
    untouched = {_line(record) for i, record in enumerate(records) if i != at}
    assert not parsed.conclusive
    assert all("!".join(_fields(channel)) in untouched for channel in parsed)
    for channel in parse_channels(listing, name_prefix=FORGED_NAME[:20]):
        assert "!".join(_fields(channel)) in untouched
