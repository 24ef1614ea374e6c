"""The simulated Asterisk against the real Asterisk 22.7 transcripts, byte for byte."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callgate.pbx import commands
from callgate.pbx.parsing import parse_channels, parse_count, parse_hangup, parse_version
from callgate.simulator import clitext
from callgate.simulator.engine import SimulatedAsterisk
from callgate.simulator.timeline import Scenario

TRANSCRIPTS = Path(__file__).parents[2] / "recordings" / "asterisk"
PHONE = "+375296254070"
ORIGINATE_150 = commands.originate("150", PHONE, "inoffice")
# Commands of the CLI transcript that the simulator does not play (answered as unknown).
NOT_SIMULATED = {"cdr show status"}
NOT_SIMULATED_PREFIX = "core show channel Local/"


@dataclass(frozen=True)
class Exchange:
    command: str
    output: str
    exit_status: int


def read_transcript(name: str) -> str:
    """A transcript's text; a missing file fails the test (the files are the reference)."""
    path = TRANSCRIPTS / name
    if not path.is_file():
        pytest.fail(f"transcript missing: {path}")
    return path.read_text(encoding="utf-8")


def exchanges(name: str) -> list[Exchange]:
    """Every `$ asterisk -rx "..."` block: the output is the lines up to `[exit status N]`."""
    block = re.compile(r'^\$ asterisk -rx "([^\n]*)"\n(.*?)^\[exit status (\d+)\]\n', re.M | re.S)
    return [Exchange(c, o, int(s)) for c, o, s in block.findall(read_transcript(name))]


def snapshots(name: str) -> list[tuple[float, str]]:
    """The timed `core show channels concise` listings of a call-lifecycle transcript."""
    found = re.findall(
        r"^--- t=\+([0-9.]+)s: core show channels concise\n(.*?)(?=^---|\Z)",
        read_transcript(name),
        re.M | re.S,
    )
    return [(float(at), "" if body == "(empty)\n" else body) for at, body in found]


def console_exchanges() -> list[tuple[str, str]]:
    """(command, output) from the pty capture: echo, prompts and terminal codes removed."""
    text = read_transcript("remote-console-over-ssh-pty.txt")
    result = []
    for sent, chunk in re.findall(r"^### sent: (.*)\n(.*)\n", text, re.M):
        command, received = ast.literal_eval(sent), ast.literal_eval(chunk)
        if not received.startswith(command + "\r\n") or command == "exit":
            continue  # the banner, and the console's own `exit`
        body = received[len(command) + 2 :].replace("vm*CLI> ", "").replace("\r\x1b[0K", "")
        result.append((command, body.replace("\r\r\n", "").replace("\r\n", "\n")))
    return result


class FakeClock:
    """A hand-moved clock; the wall clock is a fixed epoch plus the same offset."""

    def __init__(self, epoch: float, start: float = 0.0) -> None:
        self.t = start
        self.epoch = epoch

    def __call__(self) -> float:
        return self.t

    def wall(self) -> float:
        return self.epoch + self.t


def bridge_uuid(n: int) -> str:
    """A bridge id shaped like Asterisk's (a UUID), which the listing parser insists on."""
    return f"00000000-0000-4000-8000-{n:012x}"


def make_engine(clock: FakeClock, bridge_ids: list[str] | None = None) -> SimulatedAsterisk:
    ids: Iterator[str] = iter(bridge_ids or [])
    return SimulatedAsterisk(clock=clock, wall_clock=clock.wall, bridge_ids=lambda: next(ids))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(epoch=1795707871.2)


@pytest.fixture
def engine(clock: FakeClock) -> SimulatedAsterisk:
    return make_engine(clock, [bridge_uuid(n) for n in range(100)])


def at(engine: SimulatedAsterisk, clock: FakeClock, t: float, command: str) -> str:
    """Run `command` at time `t`; it must succeed (exit 0)."""
    clock.t = t
    answer = engine.execute(command)
    assert answer.exit_status == 0
    return answer.output


# -- the transcripts, replayed -------------------------------------------------------------

# When each command of real-asterisk-22.7.0-cli.txt runs, in seconds after the first call's
# originate (a call the transcript only shows the channels of). Chosen to fit the durations
# and uniqueid epochs printed: e.g. the 2nd call is 15.9 s after the 1st, within the same second
# of the wall clock as the 4th, and its customer is dialled before the 4th call's agent answers.
CLI_SCHEDULE = [15.5, 15.5, 15.5, 15.9, 15.95, 15.96, 15.97, 16.0, 16.1, 16.1]
CLI_SCHEDULE += [16.5, 16.55, 16.6, 16.6, 16.95, 16.97, 17.0, 17.0, 17.1, 17.1]


def test_cli_transcript_replayed_byte_for_byte() -> None:
    """Every command of the CLI transcript prints the recorded bytes and exit status."""
    clock = FakeClock(epoch=1795707803.3, start=-10.5)  # Asterisk started 10.5 s earlier
    engine = make_engine(clock, ["7bd28ea7-4495-4646-97e4-1bd9928c605c"])
    first = "channel originate Local/150@inoffice application Dial LOCAL/+375296254070@inoffice"
    at(engine, clock, 0.0, first)
    recorded = exchanges("real-asterisk-22.7.0-cli.txt")
    assert len(recorded) == len(CLI_SCHEDULE)
    compared = 0
    for when, exchange in zip(CLI_SCHEDULE, recorded, strict=True):
        if when == 16.95:
            # Asterisk used uniqueids .10-.13 for something the simulator does not play (the
            # CDR backends' dummy channels after the first call ended, most likely).
            engine.next_uniqueid = 14
        clock.t = when
        answer = engine.execute(exchange.command)
        if exchange.command in NOT_SIMULATED or exchange.command.startswith(NOT_SIMULATED_PREFIX):
            assert answer.output.startswith(f"No such command '{exchange.command}'")
            continue
        assert (answer.output, answer.exit_status) == (exchange.output, exchange.exit_status), (
            exchange.command
        )
        compared += 1
    assert compared == len(recorded) - 2  # all but `core show channel` and `cdr show status`


def test_answered_call_lifecycle_matches_transcript() -> None:
    """The answered call's listings match at every recorded moment, bridge id included."""
    clock = FakeClock(epoch=1795707871.2)
    engine = make_engine(clock, ["8afdf4e1-3c46-491d-a76e-d3008f83b48c"])
    engine.next_channel_number, engine.next_uniqueid = 6, 19
    (originate,) = exchanges("call-lifecycle-answered.txt")
    assert at(engine, clock, 0.0, originate.command) == ""  # the file's blank line: recorder's
    listings = snapshots("call-lifecycle-answered.txt")
    assert [t for t, _ in listings] == [0.03, 1.04, 3.02, 3.58, 23.54]
    for t, expected in listings:
        assert at(engine, clock, t, "core show channels concise") == expected, t


def test_agent_no_answer_lifecycle_matches_transcript() -> None:
    """Extension 199 rings (Wait 45) until the originate's 30 s timeout, then all is gone."""
    clock = FakeClock(epoch=1795707899.5)
    engine = make_engine(clock)
    engine.next_channel_number, engine.next_uniqueid = 8, 27
    (originate,) = exchanges("call-lifecycle-agent-no-answer.txt")
    assert at(engine, clock, 0.0, originate.command) == ""
    listings = snapshots("call-lifecycle-agent-no-answer.txt")
    assert len(listings) == 2
    for t, expected in listings:
        assert at(engine, clock, t, "core show channels concise") == expected, t


def test_remote_console_answers_match_capture() -> None:
    """The console capture's commands give the same text (verbose, listing, sentinel, count)."""
    clock = FakeClock(epoch=1795708900.2)
    engine = make_engine(clock)
    engine.next_channel_number, engine.next_uniqueid, engine.calls_processed = 0xA1, 333, 160
    checked = 0
    for n, (command, expected) in enumerate(console_exchanges()):
        assert at(engine, clock, 0.01 * n, command) == expected, command
        checked += 1
    assert checked == 6


def test_unknown_commands_as_in_transcripts() -> None:
    """Unknown commands name the longest known prefix, as both transcript examples show."""
    engine = SimulatedAsterisk()
    assert engine.execute("no such command here").output == (
        "No such command 'no such command here' "
        "(type 'core show help no such' for other possible commands)\n"
    )
    assert engine.execute("cgsync0123456789ab").output == (
        "No such command 'cgsync0123456789ab' "
        "(type 'core show help cgsync0123456789ab' for other possible commands)\n"
    )
    assert "core show help core show'" in engine.execute("core show nothing").output


def test_wrong_originate_usages_print_transcript_usage() -> None:
    """Every malformed originate prints the usage recorded from Asterisk, exit 0."""
    usage = next(
        e.output for e in exchanges("real-asterisk-22.7.0-cli.txt") if e.command.endswith("ate")
    )
    assert usage.startswith("  There are two ways") and usage == clitext.ORIGINATE_USAGE
    engine = SimulatedAsterisk()
    for wrong in (
        "channel originate",
        "channel originate Local/150@inoffice",
        "channel originate Local/150@inoffice application",
        "channel originate 150@inoffice application Dial Local/1@inoffice",
        "channel originate Local/150@inoffice dial Local/1@inoffice",
    ):
        assert engine.execute(wrong).output == usage, wrong
    assert engine.live_calls() == []


# -- scenarios -----------------------------------------------------------------------------


def states(engine: SimulatedAsterisk, clock: FakeClock, t: float) -> dict[str, tuple[str, ...]]:
    """The parsed listing at `t`: channel name -> (state, application, data, bridge id)."""
    channels = parse_channels(at(engine, clock, t, commands.CHANNELS_CONCISE))
    return {c.name: (c.state, c.application, c.data, c.bridge_id) for c in channels}


def test_answered_scenario_over_time(engine: SimulatedAsterisk, clock: FakeClock) -> None:
    """Default scenario: ringing, dialing, bridged, talking, then gone at 23.5 s."""
    at(engine, clock, 0.0, ORIGINATE_150)
    agent, customer = "Local/150@inoffice-00000000", f"Local/{PHONE}@inoffice-00000001"
    assert states(engine, clock, 0.5)[agent + ";1"][:2] == ("Ringing", "AppDial2")
    dialing = states(engine, clock, 2.0)
    assert dialing[agent + ";1"] == ("Up", "Dial", f"Local/{PHONE}@inoffice", "")
    assert dialing[customer + ";2"] == ("Ring", "Wait", "2", "")
    talking = states(engine, clock, 10.0)
    assert talking[agent + ";1"][3] == talking[customer + ";1"][3] == bridge_uuid(0)
    assert talking[customer + ";2"] == ("Up", "Wait", "20", "")
    assert len(states(engine, clock, 23.49)) == 4
    assert states(engine, clock, 23.5) == {}


def test_agent_never_answers(engine: SimulatedAsterisk, clock: FakeClock) -> None:
    """An agent that never answers rings 30 s and no customer leg is ever created."""
    at(engine, clock, 0.0, commands.originate("199", PHONE, "inoffice"))
    ringing = states(engine, clock, 29.9)
    assert ringing == {
        "Local/199@inoffice-00000000;1": ("Ringing", "AppDial2", "(Outgoing Line)", ""),
        "Local/199@inoffice-00000000;2": ("Ring", "Wait", "45", ""),
    }
    assert states(engine, clock, 30.0) == {}
    assert engine.next_channel_number == 1 and engine.calls_processed == 1


def test_customer_never_answers(engine: SimulatedAsterisk, clock: FakeClock) -> None:
    """A customer that never answers rings until the ring timeout; nothing is bridged."""
    engine.set_scenario("150", Scenario(customer_answer_after=None, customer_ring_timeout=25))
    at(engine, clock, 0.0, ORIGINATE_150)
    for t in (1.5, 10.0, 25.9):
        listing = states(engine, clock, t)
        assert len(listing) == 4 and all(bridge == "" for *_, bridge in listing.values())
        assert listing[f"Local/{PHONE}@inoffice-00000001;2"] == ("Ring", "Wait", "25", "")
    assert states(engine, clock, 26.0) == {}


def test_wrong_context_or_technology_leaves_no_channel(
    engine: SimulatedAsterisk, clock: FakeClock
) -> None:
    """Unknown context or technology: silent exit 0. The Local pair is listed for a moment
    (README fact 1) and takes its number; a Foo/ channel is never created."""
    answers = [
        engine.execute(f"channel originate {channel} application Dial Local/{PHONE}@inoffice")
        for channel in ("Local/150@nosuchcontext", "Foo/150")
    ]
    assert [(a.output, a.exit_status) for a in answers] == [("", 0), ("", 0)]
    assert set(states(engine, clock, 0.0)) == {
        "Local/150@nosuchcontext-00000000;1",
        "Local/150@nosuchcontext-00000000;2",
    }
    assert states(engine, clock, 0.1) == {}
    assert at(engine, clock, 0.2, commands.CHANNELS_COUNT) == (
        "0 active channels\n0 active calls\n0 calls processed\n"
    )
    at(engine, clock, 0.3, ORIGINATE_150)  # the failed Local pair took 00000000
    assert "Local/150@inoffice-00000001;1" in states(engine, clock, 0.4)


def test_hangup_mid_call_ends_the_whole_call(engine: SimulatedAsterisk, clock: FakeClock) -> None:
    """Hanging up any one channel of a talking call removes all four channels at once."""
    at(engine, clock, 0.0, ORIGINATE_150)
    at(engine, clock, 0.0, commands.originate("151", PHONE, "inoffice"))
    channel = f"Local/{PHONE}@inoffice-00000002;2"
    assert channel in states(engine, clock, 10.0)
    output = at(engine, clock, 10.0, commands.hangup(channel))
    assert output == f"Requested Hangup on channel '{channel}'\n"
    assert parse_hangup(output) == [channel]
    left = states(engine, clock, 10.0)
    assert len(left) == 4 and all("-00000002" not in name for name in left)
    assert parse_count(at(engine, clock, 10.0, commands.CHANNELS_COUNT)).active_channels == 4


def test_hangup_by_uniqueid_case_and_all(engine: SimulatedAsterisk, clock: FakeClock) -> None:
    """Hangup finds a channel by name in any case or by uniqueid; `all` lists then ends all."""
    at(engine, clock, 0.0, ORIGINATE_150)
    at(engine, clock, 0.0, commands.originate("152", PHONE, "inoffice"))
    shouted = at(engine, clock, 0.1, "channel request hangup LOCAL/150@INOFFICE-00000000;2")
    assert shouted == "Requested Hangup on channel 'Local/150@inoffice-00000000;2'\n"
    by_id = at(engine, clock, 0.2, f"channel request hangup {int(clock.wall())}.3")
    assert by_id == "Requested Hangup on channel 'Local/152@inoffice-00000001;2'\n"
    assert at(engine, clock, 0.3, "channel request hangup Local/150@inoffice-00000000;1") == (
        "Local/150@inoffice-00000000;1 is not a known channel\n"
    )
    at(engine, clock, 1.0, commands.originate("153", PHONE, "inoffice"))
    names = list(states(engine, clock, 1.0))
    assert parse_hangup(at(engine, clock, 1.0, commands.HANGUP_ALL)) == names
    assert states(engine, clock, 1.0) == {}


def test_scenarios_set_at_run_time(engine: SimulatedAsterisk, clock: FakeClock) -> None:
    """Per-extension overrides and the default scenario apply to the next originate."""
    engine.set_scenario("150", Scenario(agent_answer_after=5))
    engine.default_scenario = Scenario(agent_answer_after=0.5)
    at(engine, clock, 0.0, ORIGINATE_150)
    at(engine, clock, 0.0, commands.originate("160", PHONE, "inoffice"))
    listing = states(engine, clock, 4.9)
    assert listing["Local/150@inoffice-00000000;2"] == ("Ring", "Wait", "5", "")
    assert listing["Local/160@inoffice-00000001;1"][:2] == ("Up", "Dial")
    engine.set_scenario("150", None)
    assert engine.scenario_for("150") == Scenario(agent_answer_after=0.5)


def test_contexts_dial_failures_and_agent_hold(engine: SimulatedAsterisk, clock: FakeClock) -> None:
    """A new context works; a Dial to an unknown one ends the call when the agent answers."""
    engine.set_contexts({"inoffice", "sales"})
    engine.set_scenario("170", Scenario(talk=100, agent_hold=40))
    at(engine, clock, 0.0, commands.originate("150", PHONE, "sales"))
    at(engine, clock, 0.0, "channel originate Local/151@inoffice application Dial Local/1@x")
    at(engine, clock, 0.0, "channel originate Local/152@inoffice extension 200@inoffice")
    at(engine, clock, 0.0, commands.originate("170", PHONE, "inoffice"))
    assert len(states(engine, clock, 0.9)) == 8
    after = states(engine, clock, 1.0)  # 151's Dial failed, 152's target is not simulated
    assert sorted({name.split("-")[0] for name in after}) == [
        f"Local/{PHONE}@inoffice",
        f"Local/{PHONE}@sales",
        "Local/150@sales",
        "Local/170@inoffice",
    ]
    assert {name.rsplit("-", 1)[1] for name in after if PHONE in name} == {
        "00000004;1",
        "00000004;2",
        "00000006;1",
        "00000006;2",
    }  # 00000005 went to 151's failed Dial to Local/1@x
    # The agent leg's Wait(40) starts 20 ms after its Answer() (at 1 s) and ends first.
    assert "Local/170@inoffice-00000003;1" in states(engine, clock, 41.01)
    assert states(engine, clock, 41.02) == {}


# -- the other commands --------------------------------------------------------------------


def test_counts_use_singular_forms(engine: SimulatedAsterisk, clock: FakeClock) -> None:
    """One ringing call: `1 active call`, `1 call processed`; ESS() drops the s for 1 only."""
    at(engine, clock, 0.0, ORIGINATE_150)
    assert at(engine, clock, 0.5, commands.CHANNELS_COUNT) == (
        "2 active channels\n1 active call\n1 call processed\n"
    )
    assert [clitext.ess(n) for n in (0, 1, 2)] == ["s", "", "s"]


def test_version_uptime_and_verbose(engine: SimulatedAsterisk, clock: FakeClock) -> None:
    """Version parses; uptime formats as print_uptimestr(); verbose answers as a console."""
    assert parse_version(at(engine, clock, 0, commands.VERSION)) == "22.7.0"
    assert at(engine, clock, 3661, "core show uptime") == (
        "System uptime: 1 hour, 1 minute, 1 second\nLast reload: 1 hour, 1 minute, 1 second\n"
    )
    assert at(engine, clock, 3661, "core show uptime seconds").startswith("System uptime: 3661\n")
    samples = {0: "0 seconds", 1: "1 second", 60: "60 seconds", 3600: "60 minutes"}
    assert {s: clitext.uptime_text(s) for s in samples} == samples
    assert at(engine, clock, 0, "core set verbose 0") == "Console verbose is still OFF.\n"
    assert at(engine, clock, 0, "core set verbose 3") == "Console verbose was OFF and is now 3.\n"
    assert at(engine, clock, 0, "core set verbose 3 silent") == ""
    assert at(engine, clock, 0, "core set verbose").startswith("Usage: core set verbose")


def test_words_are_parsed_like_asterisk(engine: SimulatedAsterisk, clock: FakeClock) -> None:
    """Case-insensitive command words, collapsed blanks, quotes and backslashes as in cli.c."""
    assert at(engine, clock, 0, "  CORE   Show\tversion") == clitext.VERSION_LINE + "\n"
    assert clitext.parse_args(r'a "b c"d e\ f ""') == ["a", "b cd", "e f", ""]
    quoted = 'channel originate LOCAL/150@inoffice application dial "LOCAL/+1@inoffice,30"'
    at(engine, clock, 0, quoted)
    first = parse_channels(at(engine, clock, 1.5, commands.CHANNELS_CONCISE))
    agent = next(c for c in first if c.name == "Local/150@inoffice-00000000;1")
    assert (agent.application, agent.data) == ("Dial", "LOCAL/+1@inoffice,30")


def test_not_running_answers_every_command(engine: SimulatedAsterisk, clock: FakeClock) -> None:
    """Asterisk not running: the exact message, no newline, exit 1, and nothing happens."""
    engine.running = False
    for command in (ORIGINATE_150, commands.VERSION, "nonsense", ""):
        answer = engine.execute(command)
        assert (answer.output, answer.exit_status) == (clitext.NOT_RUNNING, 1)
    assert not answer.output.endswith("\n")
    engine.running = True
    assert at(engine, clock, 1, commands.CHANNELS_CONCISE) == ""
    assert [c.command for c in engine.commands][:2] == [ORIGINATE_150, commands.VERSION]


def test_commands_are_recorded_and_reset(engine: SimulatedAsterisk, clock: FakeClock) -> None:
    """Every command is recorded with its times; reset() forgets calls, counters, settings."""
    at(engine, clock, 2.5, ORIGINATE_150)
    engine.set_contexts({"other"})
    recorded = engine.commands[0]
    assert (recorded.command, recorded.at, recorded.wall) == (ORIGINATE_150, 2.5, clock.wall())
    engine.reset()
    assert engine.commands == [] and engine.live_calls() == []
    assert (engine.next_channel_number, engine.contexts) == (0, frozenset({"inoffice"}))
    assert engine.scenario_for("199").agent_answer_after is None


def test_live_calls_describe_channels(engine: SimulatedAsterisk, clock: FakeClock) -> None:
    """live_calls() lists each call with its channels and age."""
    at(engine, clock, 0.0, ORIGINATE_150)
    clock.t = 1.5
    (call,) = engine.live_calls()
    assert (call.extension, call.context, call.elapsed) == ("150", "inoffice", 1.5)
    assert len(call.channels) == 4 and call.agent_channel == "Local/150@inoffice-00000000"


def test_scenario_validation_and_json() -> None:
    """Scenarios refuse negative or unknown values and survive a JSON round trip."""
    scenario = Scenario(agent_answer_after=None, talk=3.5)
    assert Scenario.from_json(scenario.to_json()) == scenario
    with pytest.raises(ValueError, match="talk"):
        Scenario(talk=-1)
    with pytest.raises(ValueError, match="talk"):
        Scenario.from_json({"talk": None})
    with pytest.raises(ValueError, match="unknown"):
        Scenario.from_json({"ring": 1})
    with pytest.raises(ValueError, match="number"):
        Scenario.from_json({"talk": "long"})


@settings(max_examples=60, deadline=None)
@given(
    agent=st.one_of(st.none(), st.floats(0, 40)),
    customer=st.one_of(st.none(), st.floats(0, 40)),
    talk=st.floats(0, 30),
    probes=st.lists(st.floats(0, 80), min_size=1, max_size=8),
)
def test_any_scenario_lists_parseable_consistent_channels(
    agent: float | None, customer: float | None, talk: float, probes: list[float]
) -> None:
    """For any scenario and moments, listings parse, pairs are whole and counts agree."""
    clock = FakeClock(epoch=1795707871.2)
    engine = make_engine(clock, [bridge_uuid(n) for n in range(10)])
    engine.default_scenario = Scenario(agent, customer, talk)
    at(engine, clock, 0.0, ORIGINATE_150)
    for t in sorted(probes):
        raw = at(engine, clock, t, commands.CHANNELS_CONCISE)
        channels = parse_channels(raw)
        assert len(channels) == raw.count("\n") and len(channels) in (0, 2, 4)
        assert {c.half for c in channels} <= {"1", "2"}
        assert all(0 <= c.duration <= t for c in channels)
        bridges = {c.bridge_id for c in channels if c.bridge_id}
        assert len(bridges) <= 1
        count = parse_count(at(engine, clock, t, commands.CHANNELS_COUNT))
        assert count.active_channels == len(channels)
        assert count.active_calls == len(channels) // 2
