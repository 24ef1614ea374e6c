"""Command building: the one place that puts request values into a command, quoted."""

from __future__ import annotations

import shlex

import pytest

from callgate.errors import InvalidInput
from callgate.pbx import commands


def test_originate_is_the_seed_command_with_canonical_tech() -> None:
    """The CLI command is the seed's, with Asterisk's canonical `Local/`."""
    assert commands.originate("150", "+375296254070", "inoffice") == (
        "channel originate Local/150@inoffice application Dial Local/+375296254070@inoffice"
    )


def test_originate_refuses_unvalidated_values() -> None:
    """The builder re-checks its inputs, so a caller that forgot cannot inject."""
    with pytest.raises(InvalidInput):
        commands.originate("150;id", "+375296254070", "inoffice")
    with pytest.raises(InvalidInput):
        commands.originate("150", "+375 29$(id)", "inoffice")
    with pytest.raises(ValueError, match="context"):
        commands.originate("150", "+375296254070", "in office")


def test_rx_shell_quotes_and_chains() -> None:
    """Each command is one shell word after `-rx`, chained with separators."""
    line = commands.rx_shell("asterisk", ["core show version", commands.CHANNELS_CONCISE])
    words = shlex.split(line)
    assert words[:3] == ["asterisk", "-rx", "core show version"]
    assert words[3:5] == ["&&", "printf"]
    assert words[5].replace("\\n", "\n") == commands.SEPARATOR  # what printf will print
    assert words[-3:] == ["asterisk", "-rx", "core show channels concise"]


def test_split_outputs_round_trips() -> None:
    """What the separators joined, split_outputs takes apart exactly."""
    outputs = ["", "a!b\nc!d\n", "Unable to connect"]
    assert commands.split_outputs(commands.SEPARATOR.join(outputs)) == outputs


def test_hangup_accepts_only_channel_names() -> None:
    """Hangup of `all` or of a name with shell syntax is refused."""
    assert commands.hangup("Local/150@inoffice-00000006;1").endswith("-00000006;1")
    with pytest.raises(InvalidInput):
        commands.hangup("all")
