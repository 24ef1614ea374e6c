"""The verbose console's call lines, read from a real Asterisk 22.7's own words."""

from __future__ import annotations

from callgate.pbx.verbose import Heard, Said, heard
from tests.support.transcripts import read


def recorded() -> list[Heard]:
    """Every call event of console-verbose-outcomes.txt (prompts and typed lines dropped)."""
    events = []
    for line in read("console-verbose-outcomes.txt").splitlines():
        text = line.removeprefix("vm*CLI> ")
        found = heard(text)
        if found is not None:
            events.append(found)
    return events


def test_every_outcome_of_the_recording_is_heard_in_order() -> None:
    events = recorded()
    assert events[0] == Heard(Said.REFUSED, peer="150@nosuchcontext")
    assert Heard(Said.BUSY, "Local/120@inoffice-00000060;1") in events  # the agent: busy
    assert Heard(Said.BUSY, "Local/+375290000017@inoffice-00000062;1") in events  # customer
    assert Heard(Said.NO_ANSWER, ms=5000) in events
    assert (
        Heard(
            Said.ANSWERED,
            "Local/+375296254070@inoffice-00000066;1",
            "Local/151@inoffice-00000065;1",
        )
        in events
    )
    assert Heard(Said.ANSWERED, "Local/151@inoffice-00000065;1") in events  # the agent
    assert (
        Heard(Said.JOINED, "Local/151@inoffice-00000065;1", "a406b64f-e0c6-4f33-9167-569420942f1d")
        in events
    )
    assert Heard(Said.ENDED, "Local/150@inoffice-00000063;2") in events
    ringing = [e.channel for e in events if e.said is Said.RINGING]
    assert ringing == [
        "Local/150@inoffice-00000061;1",
        "Local/+375290000017@inoffice-00000062;1",
        "Local/150@inoffice-00000063;1",
        "Local/+375290000018@inoffice-00000064;1",
        "Local/151@inoffice-00000065;1",
        "Local/+375296254070@inoffice-00000066;1",
    ]


def test_the_dialplan_starting_is_heard() -> None:
    """The first step of a new ;2 leg: the evidence an originate's check waits for."""
    line = (
        '    -- Executing [150@inoffice:1] NoOp("Local/150@inoffice-00000061;2", "agent leg 150")'
        " in new stack"
    )
    assert heard(line) == Heard(Said.STARTED, "Local/150@inoffice-00000061;2")
    started = [e.channel for e in recorded() if e.said is Said.STARTED]
    assert "Local/120@inoffice-00000060;2" in started  # the busy agent's dialplan ran too
    assert not any("nosuchcontext" in channel for channel in started)  # the refused one: never


def test_other_lines_say_nothing() -> None:
    for line in (
        "    -- Called 150@inoffice",
        "    -- Executing [150@inoffice:1] NoOp(Local/150@inoffice-00000061;2) in new stack",
        "  == Everyone is busy/congested at this time (1:1/0/0)",
        "Console verbose was OFF and is now 3.",
        "Local/150@inoffice-00000061;1!inoffice!150!1!Down!AppDial2!(Outgoing Line)!!!!3!0!!1.2",
        "    -- Local/150@inoffice-00000061;1 is ringing and more",
        "",
    ):
        assert heard(line) is None, line
