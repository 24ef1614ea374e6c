"""Parsing of every recorded Asterisk 22.7 transcript in recordings/asterisk."""

from __future__ import annotations

import pytest

from callgate.errors import AsteriskNotRunning, UnexpectedOutput
from callgate.pbx import parsing
from tests.support import transcripts


def _outputs(command: str) -> list[str]:
    found = [e.output for e in transcripts.exchanges() if e.command == command]
    assert found, f"no transcript block for {command!r}"
    return found


def test_version() -> None:
    """`core show version` gives the version number."""
    assert parsing.parse_version(_outputs("core show version")[0]) == "22.7.0"


def test_counts() -> None:
    """`core show channels count` gives its three numbers."""
    first, last = _outputs("core show channels count")
    assert parsing.parse_count(first) == parsing.ChannelCount(4, 2, 2)
    assert parsing.parse_count(last) == parsing.ChannelCount(0, 0, 5)
    assert (
        parsing.parse_count("1 active channel\n1 active call\n1 call processed\n").active_calls == 1
    )


def test_concise_listing_fields() -> None:
    """Every field of a concise line lands where Asterisk put it."""
    listing = _outputs("core show channels concise")[0]
    channels = parsing.parse_channels(listing)
    assert len(channels) == 6
    agent = next(c for c in channels if c.name == "Local/150@inoffice-00000000;1")
    assert agent.state == "Up"
    assert agent.application == "Dial"
    assert agent.data == "LOCAL/+375296254070@inoffice"
    assert agent.duration == 15
    assert agent.bridge_id == "7bd28ea7-4495-4646-97e4-1bd9928c605c"
    assert agent.uniqueid == "1795707803.0"
    assert agent.base_name == "Local/150@inoffice-00000000"
    assert agent.half == "1"
    customer = next(c for c in channels if c.name.endswith("00000001;1"))
    assert customer.extension == ""
    assert customer.caller_id == "150"
    assert customer.bridge_id == agent.bridge_id


def test_a_name_prefix_keeps_only_its_channels() -> None:
    """With a name prefix only the channels whose names start with it are parsed."""
    listing = _outputs("core show channels concise")[0]
    everything = parsing.parse_channels(listing)
    prefix = "Local/150@inoffice-"
    some = parsing.parse_channels(listing, name_prefix=prefix)
    assert some == [c for c in everything if c.name.startswith(prefix)]
    assert 0 < len(some) < len(everything)
    assert parsing.parse_channels(listing, name_prefix="Local/999@inoffice-") == []


def test_every_concise_output_parses_completely() -> None:
    """Each listing yields exactly one channel per line, and the empty one none."""
    for output in _outputs("core show channels concise"):
        assert len(parsing.parse_channels(output)) == output.count("\n")


@pytest.mark.parametrize(
    "name", ["call-lifecycle-answered.txt", "call-lifecycle-agent-no-answer.txt"]
)
def test_lifecycle_snapshots_parse(name: str) -> None:
    """Every snapshot of a call's life parses, states among those Asterisk shows."""
    for _, listing in transcripts.snapshots(name):
        channels = parsing.parse_channels(listing)
        assert len(channels) == listing.count("\n")
        assert {c.state for c in channels} <= {"Ring", "Ringing", "Up"}


def test_bang_in_application_data_is_kept() -> None:
    """A `!` inside the data field does not shift the later fields."""
    line = "Local/1@c-00000001;1!c!1!1!Up!Dial!a!b!!!!3!7!!1.1\n"
    (channel,) = parsing.parse_channels(line)
    assert channel.data == "a!b"
    assert channel.duration == 7
    assert channel.uniqueid == "1.1"


def test_hangup_answers() -> None:
    """Accepted hangups are listed; an unknown channel gives none."""
    assert parsing.parse_hangup(
        _outputs("channel request hangup Local/+375296254070@inoffice-00000001;1")[0]
    ) == ["Local/+375296254070@inoffice-00000001;1"]
    assert (
        parsing.parse_hangup(_outputs("channel request hangup Local/999@inoffice-deadbeef;1")[0])
        == []
    )
    assert len(parsing.parse_hangup(_outputs("channel request hangup all")[0])) == 6


def test_error_answers_are_recognised() -> None:
    """Not running and unknown command raise; an empty originate answer does not."""
    with pytest.raises(AsteriskNotRunning):
        parsing.check_cli_output(
            "Unable to connect to remote asterisk (does /var/run/asterisk/asterisk.ctl exist?)"
        )
    with pytest.raises(UnexpectedOutput):
        parsing.check_cli_output(_outputs("no such command here")[0])
    assert parsing.check_cli_output("") == ""


def test_version_from_garbage_raises() -> None:
    """A version answer that is not one is an error, not a guess."""
    with pytest.raises(UnexpectedOutput):
        parsing.parse_version("No such command 'core show version'")
