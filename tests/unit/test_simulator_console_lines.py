"""What the simulated Asterisk writes to its consoles on its own, against the recording of a
real Asterisk 22.7 console at verbose 3 (console-verbose-outcomes.repr.txt), byte for byte."""

from __future__ import annotations

import ast
import asyncio
import re
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callgate.pbx import commands
from callgate.pbx.parsing import parse_channels
from callgate.simulator import logtext
from callgate.simulator.console import ConsoleScreen
from callgate.simulator.engine import SimulatedAsterisk
from callgate.simulator.pump import ConsolePump
from callgate.simulator.timeline import (
    DOOMED_LIFETIME,
    SETTLE,
    Scenario,
    dial_timeout_ms,
)
from tests.support.transcripts import read

RECORDING = "console-verbose-outcomes.repr.txt"
PROMPT = "vm*CLI> "
EPOCH = 1796565376.0  # the recording's wall clock at its t=0 (fits every uniqueid and date)
BRIDGE = "a406b64f-e0c6-4f33-9167-569420942f1d"
DOOMED = (
    "channel originate Local/150@nosuchcontext application Dial Local/+375296254070@nosuchcontext"
)
AGENT_BUSY = "channel originate Local/120@inoffice application Dial Local/+375296254070@inoffice"
CUSTOMER_BUSY = "channel originate Local/150@inoffice application Dial Local/+375290000017@inoffice"
NO_ANSWER = "channel originate Local/150@inoffice application Dial Local/+375290000018@inoffice,5"
ANSWERED = "channel originate Local/151@inoffice application Dial Local/+375296254070@inoffice"
LISTING = commands.CHANNELS_CONCISE


class Clock:
    """The engine's clock, moved by hand; the wall clock follows it from ``EPOCH``."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def wall(self) -> float:
        return EPOCH + self.t


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The recording's host ran on UTC; log lines carry the local time, as logger.c's do."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def recorded_chunks() -> list[tuple[float, str]]:
    """(time, text) of each chunk the real console wrote, or ``>>> …`` for what was typed."""
    found = re.findall(r"^ *([0-9.]+) (b'.*'|b\".*\")$", read(RECORDING), re.M)
    return [(float(t), ast.literal_eval(chunk).decode("utf-8")) for t, chunk in found]


def shown_lines(screen: str, typed: set[str]) -> list[str]:
    """The lines a screen shows, without the erase codes, prompts, redraws and echo that
    depend on how Asterisk's writes happened to be split into blocks."""
    text = screen.replace("\r\x1b[0K", "").replace("\r\r\n", "\r\n")
    lines = []
    for line in text.split("\r\n"):
        while line.startswith(PROMPT):
            line = line[len(PROMPT) :]
        if line and line not in typed:
            lines.append(line)
    return lines


class Session:
    """A console on the engine as a server runs it: pushed blocks when due, answers as typed."""

    def __init__(self, engine: SimulatedAsterisk, clock: Clock) -> None:
        self.engine, self.clock = engine, clock
        self.screen = ConsoleScreen("vm", 11495)
        self.console = engine.open_console()
        self.written: list[str] = []
        self.blocks: list[str] = []  # every pushed block, as the engine gave it

    def until(self, t: float) -> None:
        """Let time run to ``t``, writing each block when it is due (what the pump does)."""
        while (due := self.engine.next_console_line_at()) is not None and due <= t:
            self.clock.t = max(self.clock.t, due)
            self.push()
        self.clock.t = t
        self.push()

    def push(self) -> None:
        for block in self.engine.console_output().get(self.console, []):
            self.blocks.append(block)
            self.written.append(self.screen.pushed(block))

    def type(self, t: float, *lines: str) -> None:
        self.until(t)
        answers = self.screen.respond(lines, self.ask)
        self.written.extend(answers)
        self.push()  # what the commands caused comes after their answers

    def ask(self, command: str) -> tuple[str, int]:
        answer = self.engine.execute(command, self.console)
        return answer.output, answer.exit_status


def recorded_session() -> Session:
    """The recording's session replayed: same counters, clocks, scenarios and typing times."""
    clock = Clock()
    engine = SimulatedAsterisk(clock=clock, wall_clock=clock.wall, bridge_ids=lambda: BRIDGE)
    engine.next_channel_number, engine.next_uniqueid = 0x5F, 204
    session = Session(engine, clock)
    session.type(1.013, "core set verbose 3")
    session.type(1.515, DOOMED, LISTING)
    engine.set_scenario("120", Scenario(agent_outcome="busy"))
    session.type(2.519, AGENT_BUSY, LISTING)
    engine.set_scenario("150", Scenario(customer_answer_after=1, customer_outcome="busy"))
    session.type(4.524, CUSTOMER_BUSY, LISTING)
    engine.set_scenario("150", Scenario(customer_answer_after=None, customer_ring_timeout=120))
    session.until(9.5)
    engine.next_uniqueid = 215  # Asterisk used .212-.214 for channels not simulated (CDR's)
    session.type(9.538, NO_ANSWER, LISTING)
    session.until(18.5)
    engine.next_uniqueid = 222  # and .219-.221
    session.type(18.552, ANSWERED, LISTING)
    session.type(22.559, commands.HANGUP_ALL)
    session.type(24.064, "core set verbose 0")
    session.type(24.566, "exit")
    return session


def test_the_recorded_session_shows_the_same_lines_in_the_same_order() -> None:
    """Every line the real console showed (verbose, log, listings, answers), with its colour
    codes, comes out of the replayed session in the same order; only the racy order of two
    lines at one instant is the other one the recording also shows."""
    chunks = recorded_chunks()
    typed = {chunk[4:] for _, chunk in chunks if chunk.startswith(">>> ")}
    after_banner = [c for t, c in chunks if t >= 1.0 and not c.startswith(">>> ")]
    expected = shown_lines("".join(after_banner), typed)
    # In the 151 call Asterisk logged the customer's "is ringing" before its Wait(2) step; in
    # the 0017 and 0018 calls after its Wait step, which is the order the simulator uses.
    ringing = next(i for i, line in enumerate(expected) if "-00000066;1 is ringing" in line)
    assert "Wait" in expected[ringing + 1]
    expected[ringing], expected[ringing + 1] = expected[ringing + 1], expected[ringing]
    session = recorded_session()
    banner = session.screen.banner()
    assert shown_lines("".join(session.written), typed) == expected
    assert banner.startswith(chunks[0][1])  # the banner, byte for byte, to the pid


def test_blocks_that_the_recording_shows_alone_are_byte_for_byte() -> None:
    """Blocks of one instant are written as Asterisk writes a block: erase, CRLF, redraw."""
    written = "".join(recorded_session().written)
    recorded = "".join(chunk for _, chunk in recorded_chunks())
    alone = [
        # The agent's Wait(60), 20 ms after its Answer(), and the customer's Wait(20).
        "\r\x1b[0K\x1b[1;30m    -- \x1b[0mExecuting [150@inoffice:5] \x1b[1;36mWait\x1b[0m"
        '("\x1b[1;35mLocal/150@inoffice-00000061;2\x1b[0m", "\x1b[1;35m60\x1b[0m") in new stack'
        "\r\n\r\r\nvm*CLI> ",
        "\r\x1b[0K\x1b[1;30m    -- \x1b[0mExecuting [+375296254070@inoffice:5] \x1b[1;36mWait"
        '\x1b[0m("\x1b[1;35mLocal/+375296254070@inoffice-00000066;2\x1b[0m", '
        '"\x1b[1;35m20\x1b[0m") in new stack\r\n\r\r\nvm*CLI> ',
        "\r\x1b[0KConsole verbose was OFF and is now 3.\r\n\r\r\nvm*CLI> ",
        "\r\x1b[0KConsole verbose was 3 and is now OFF.\r\n\r\r\nvm*CLI> ",
    ]
    for block in alone:
        assert block in recorded and block in written, block


def test_the_doomed_originate_is_listed_then_gone_with_the_notice() -> None:
    """The first listing after a wrong-context originate shows the recorded pair exactly; the
    NOTICE follows, 2 ms later, byte for byte (date from the simulated wall clock)."""
    session = recorded_session()
    listed = (
        "\r\x1b[0KLocal/150@nosuchcontext-0000005f;1!nosuchcontext!150!1!Down!AppDial2!"
        "(Outgoing Line)!!!!3!0!!1796565377.204\r\n\r\r\nvm*CLI> "
        "\r\x1b[0KLocal/150@nosuchcontext-0000005f;2!nosuchcontext!150!1!Ring!(None)!!!!!3!0!!"
        "1796565377.205\r\n\r\r\nvm*CLI> "
    )
    assert listed in session.written  # the listing's answer, a line at a time
    notice = next(block for block in session.blocks if "NOTICE" in block)
    assert notice == (
        "[Dec  6 13:56:17] \x1b[1;33mNOTICE\x1b[0m[16379]: \x1b[1;37mcore_local.c\x1b[0m:"
        "\x1b[1;37m753\x1b[0m \x1b[1;37mlocal_call\x1b[0m: No such extension/context "
        "150@nosuchcontext while calling Local channel\n"
    )


@pytest.fixture
def engine() -> tuple[SimulatedAsterisk, Clock]:
    clock = Clock()
    engine = SimulatedAsterisk(clock=clock, wall_clock=clock.wall, bridge_ids=lambda: BRIDGE)
    engine.next_channel_number, engine.next_uniqueid = 0x61, 208
    return engine, clock


FIRST_INSTANT = (
    "Local/150@inoffice-00000061;1!inoffice!150!1!Down!AppDial2!(Outgoing Line)!!!!3!0!!"
    "1796565380.208\n"
    "Local/150@inoffice-00000061;2!inoffice!150!1!Ring!(None)!!!!!3!0!!1796565380.209\n"
)


def test_first_instant_is_the_same_for_good_and_doomed_calls(
    engine: tuple[SimulatedAsterisk, Clock],
) -> None:
    """Right after any originate the pair is Down/(None), the recording's bytes; a good call
    moves on after SETTLE, a doomed one is gone after DOOMED_LIFETIME."""
    asterisk, clock = engine
    clock.t = 4.524
    asterisk.execute(CUSTOMER_BUSY)
    assert asterisk.execute(LISTING).output == FIRST_INSTANT
    clock.t = 4.524 + SETTLE * 0.9
    assert asterisk.execute(LISTING).output == FIRST_INSTANT
    clock.t = 4.524 + SETTLE
    states = {
        c.half: (c.state, c.application) for c in parse_channels(asterisk.execute(LISTING).output)
    }
    assert states == {"1": ("Ringing", "AppDial2"), "2": ("Ring", "Wait")}
    asterisk.set_missing_extensions("inoffice", {"150"})
    asterisk.execute(CUSTOMER_BUSY)  # 150 no longer exists in inoffice: doomed
    doomed = asterisk.execute(LISTING).output
    assert "inoffice-00000062;1!inoffice!150!1!Down!AppDial2!(Outgoing Line)!!!!3!0!!" in doomed
    assert "inoffice-00000062;2!inoffice!150!1!Ring!(None)!!!!!3!0!!" in doomed
    clock.t += DOOMED_LIFETIME * 0.9
    assert "-00000062;2" in asterisk.execute(LISTING).output
    clock.t += DOOMED_LIFETIME * 0.1
    assert "-00000062" not in asterisk.execute(LISTING).output
    assert asterisk.next_channel_number == 0x63  # the doomed pair took its number


def test_a_doomed_call_notices_every_console_and_no_rx(
    engine: tuple[SimulatedAsterisk, Clock],
) -> None:
    """The NOTICE goes to consoles at verbose 0 and 3 alike; `-rx` answers never carry it,
    and the doomed call does not count as a call processed."""
    asterisk, clock = engine
    quiet, loud = asterisk.open_console(), asterisk.open_console()
    asterisk.execute("core set verbose 3", loud)
    asterisk.set_missing_extensions("inoffice", {"150"})
    assert asterisk.execute(CUSTOMER_BUSY).output == ""
    assert asterisk.next_console_line_at() == pytest.approx(DOOMED_LIFETIME)
    clock.t = DOOMED_LIFETIME
    output = asterisk.console_output()
    notice = logtext.notice(
        EPOCH + DOOMED_LIFETIME, 16379, logtext.no_such_extension("150", "inoffice")
    )
    assert output == {quiet: [notice], loud: [notice]}
    assert asterisk.console_output() == {}  # given once
    assert asterisk.execute(commands.CHANNELS_COUNT).output.endswith("0 calls processed\n")
    assert asterisk.next_console_line_at() is None


def test_verbosity_is_per_console(engine: tuple[SimulatedAsterisk, Clock]) -> None:
    """`core set verbose` answers with that console's old level; the others keep theirs."""
    asterisk, _ = engine
    first, second = asterisk.open_console(), asterisk.open_console()
    answers = [
        asterisk.execute("core set verbose 3", first).output,
        asterisk.execute("core set verbose 2", second).output,
        asterisk.execute("core set verbose atleast 1", first).output,
        asterisk.execute("core set verbose 0", first).output,
        asterisk.execute("core set verbose 3").output,  # -rx: a console of its own
    ]
    assert answers == [
        "Console verbose was OFF and is now 3.\n",
        "Console verbose was OFF and is now 2.\n",
        "Console verbose is still 3.\n",
        "Console verbose was 3 and is now OFF.\n",
        "Console verbose was OFF and is now 3.\n",
    ]
    assert (asterisk.console_verbosity(first), asterisk.console_verbosity(second)) == (0, 2)


def run_call(scenario: Scenario, originate: str, seconds: float) -> tuple[list[str], list[str]]:
    """One call from the originate to ``seconds`` later: (the verbose-3 console's lines, the
    listings' states at each console line's instant, as "<channel-suffix> <state> <app>")."""
    clock = Clock()
    asterisk = SimulatedAsterisk(clock=clock, wall_clock=clock.wall, bridge_ids=lambda: BRIDGE)
    asterisk.set_scenario(originate.split("Local/")[1].split("@")[0], scenario)
    console = asterisk.open_console()
    asterisk.execute("core set verbose 3", console)
    asterisk.execute(originate)
    lines: list[str] = []
    states: list[str] = []
    while (due := asterisk.next_console_line_at()) is not None and due <= seconds:
        clock.t = due
        for block in asterisk.console_output().get(console, []):
            lines += [_plain(line) for line in block.splitlines()]
        listing = parse_channels(asterisk.execute(LISTING).output)
        states.append(
            " ".join(sorted(f"{c.name[-10:]} {c.state} {c.application}" for c in listing))
        )
    return lines, states


def _plain(line: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", line).strip()


def test_agent_busy_ends_the_call() -> None:
    """The agent's Busy(5): the originate's dial sees it within the millisecond; all ends."""
    agent = "Local/120@inoffice-00000000"
    lines, states = run_call(Scenario(agent_outcome="busy"), AGENT_BUSY, 10)
    assert lines == [
        "-- Called 120@inoffice",
        f'-- Executing [120@inoffice:1] NoOp("{agent};2", "agent busy") in new stack',
        f'-- Executing [120@inoffice:2] Busy("{agent};2", "5") in new stack',
        f"-- {agent};1 is busy",
        f"== Spawn extension (inoffice, 120, 2) exited non-zero on '{agent};2'",
    ]
    assert states[0] == "00000000;1 Down AppDial2 00000000;2 Busy Busy" and states[-1] == ""


def test_customer_congestion_is_circuit_busy() -> None:
    """Congestion: app_dial.c's "is circuit-busy" and the count (1:0/1/0); all ends."""
    scenario = Scenario(customer_answer_after=1.5, customer_outcome="congestion")
    lines, states = run_call(scenario, CUSTOMER_BUSY, 60)
    phone = "Local/+375290000017@inoffice-00000001"
    assert lines[-5:] == [
        f'-- Executing [+375290000017@inoffice:4] Congestion("{phone};2", "5") in new stack',
        f"-- {phone};1 is circuit-busy",
        "== Everyone is busy/congested at this time (1:0/1/0)",
        f"== Spawn extension (inoffice, +375290000017, 4) exited non-zero on '{phone};2'",
        "== Spawn extension (inoffice, 150, 5) exited non-zero on 'Local/150@inoffice-00000000;2'",
    ]
    assert "Busy Congestion" in states[-2] and states[-1] == ""


def test_no_answer_ends_at_dials_own_timeout() -> None:
    """`Dial(…,5)`: 5 s after the agent answered, "Nobody picked up in 5000 ms"; all ends."""
    scenario = Scenario(customer_answer_after=None, customer_ring_timeout=120)
    lines, states = run_call(scenario, NO_ANSWER, 200)
    assert lines[-3:] == [
        "-- Nobody picked up in 5000 ms",
        "== Spawn extension (inoffice, 150, 5) exited non-zero on 'Local/150@inoffice-00000000;2'",
        "== Spawn extension (inoffice, +375290000018, 3) exited non-zero on "
        "'Local/+375290000018@inoffice-00000001;2'",
    ]
    assert states[-1] == ""
    assert dial_timeout_ms("Local/+1@inoffice,5") == 5000
    assert dial_timeout_ms("Local/+1@inoffice,2.5^3") == 2500
    assert dial_timeout_ms("Local/+1@inoffice") is dial_timeout_ms("Local/+1@x,abc") is None


def test_an_answered_call_ends_after_talking() -> None:
    """The end after Wait(talk): the customer's Hangup() step, both spawns, both legs leave."""
    lines, _ = run_call(Scenario(talk=3), ANSWERED, 60)
    customer, agent = "Local/+375296254070@inoffice-00000001", "Local/151@inoffice-00000000"
    bridge = f"'simple_bridge' basic-bridge <{BRIDGE}>"
    assert lines[-5:] == [
        f'-- Executing [+375296254070@inoffice:6] Hangup("{customer};2", "") in new stack',
        f"== Spawn extension (inoffice, +375296254070, 6) exited non-zero on '{customer};2'",
        f"-- Channel {customer};1 left {bridge}",
        f"-- Channel {agent};1 left {bridge}",
        f"== Spawn extension (inoffice, 151, 5) exited non-zero on '{agent};2'",
    ]
    assert f"-- {customer};1 answered {agent};1" in lines
    assert f"-- Channel {agent};1 joined {bridge}" in lines


def test_scenarios_read_old_and_new_json() -> None:
    """The outcome fields are optional in JSON (older clients) and checked when given."""
    assert Scenario.from_json({"talk": 3}).customer_outcome == "answer"
    busy = Scenario(agent_outcome="busy", customer_outcome="congestion")
    assert Scenario.from_json(busy.to_json()) == busy
    with pytest.raises(ValueError, match="agent_outcome"):
        Scenario(agent_outcome="maybe")
    with pytest.raises(ValueError, match="customer_outcome"):
        Scenario.from_json({"customer_outcome": 3})


@settings(max_examples=80, deadline=None)
@given(
    agent=st.one_of(st.none(), st.floats(0, 40)),
    agent_outcome=st.sampled_from(["answer", "busy", "congestion"]),
    customer=st.one_of(st.none(), st.floats(0, 40)),
    customer_outcome=st.sampled_from(["answer", "busy", "congestion"]),
    talk=st.floats(0, 30),
    timeout=st.sampled_from(["", ",5", ",0.5", ",abc"]),
    hangup=st.one_of(st.none(), st.floats(0, 80)),
)
def test_any_call_says_what_its_listings_show(
    agent: float | None,
    agent_outcome: str,
    customer: float | None,
    customer_outcome: str,
    talk: float,
    timeout: str,
    hangup: float | None,
) -> None:
    """For any scenario, Dial timeout and hangup moment: the console's lines come in time
    order, each dialplan that ends was listed, and the call's last line is at its end, when
    the listing becomes empty."""
    clock = Clock()
    asterisk = SimulatedAsterisk(clock=clock, wall_clock=clock.wall, bridge_ids=lambda: BRIDGE)
    asterisk.default_scenario = Scenario(
        agent, customer, talk, agent_outcome=agent_outcome, customer_outcome=customer_outcome
    )
    console = asterisk.open_console()
    asterisk.execute("core set verbose 3", console)
    asterisk.execute(
        f"channel originate Local/150@inoffice application Dial Local/+1@inoffice{timeout}"
    )
    listed: set[str] = set()
    said: list[tuple[float, str]] = []
    last_listed, early = 0.0, False
    while (due := asterisk.next_console_line_at()) is not None:
        if hangup is not None and hangup < due:
            clock.t = max(clock.t, hangup)
            asterisk.execute(commands.HANGUP_ALL)
            early, hangup = clock.t < SETTLE, None
            continue
        clock.t = due
        said += [
            (due, line)
            for block in asterisk.console_output().get(console, [])
            for line in block.splitlines()
        ]
        names = {c.name for c in parse_channels(asterisk.execute(LISTING).output)}
        listed |= names
        last_listed = due if names else last_listed
    assert said or early  # a pair hung up before its dialplan started has nothing to say
    assert [t for t, _ in said] == sorted(t for t, _ in said)
    ended = re.findall(r"exited non-zero on '([^']+)'", "\n".join(line for _, line in said))
    assert set(ended) <= listed and all(name.endswith(";2") for name in ended)
    assert not said or said[-1][0] >= last_listed
    assert asterisk.execute(LISTING).output == ""


# -- the pump: blocks delivered when due, no task when nothing is -------------------------


async def test_pump_delivers_when_due_then_has_no_task() -> None:
    """On the real clock the timer wakes when the NOTICE is due, delivers it, and ends."""
    asterisk = SimulatedAsterisk()
    delivered: list[tuple[int, list[str]]] = []
    pump = ConsolePump(asterisk, lambda console, blocks: delivered.append((console, blocks)))
    console = asterisk.open_console()
    pump.after_command()
    assert pump._task is None  # nothing is coming: no timer at all
    asterisk.execute(DOOMED)
    pump.after_command()
    assert pump._task is not None
    await asyncio.wait_for(pump._task, 1)
    assert [(c, "NOTICE" in "".join(b)) for c, b in delivered] == [(console, True)]
    await pump.stop()


async def test_pump_on_a_hand_moved_clock_waits_for_commands() -> None:
    """A clock that does not move: the timer gives up instead of polling; the next command
    delivers what became due when the clock was moved."""
    clock = Clock()
    asterisk = SimulatedAsterisk(clock=clock, wall_clock=clock.wall)
    delivered: list[list[str]] = []
    pump = ConsolePump(asterisk, lambda console, blocks: delivered.append(blocks))
    asterisk.open_console()
    asterisk.execute(DOOMED)
    pump.after_command()
    assert pump._task is not None
    await asyncio.wait_for(pump._task, 1)  # slept 2 ms, saw the clock stand still, ended
    assert delivered == []
    clock.t = 1.0
    pump.before_command()
    assert len(delivered) == 1 and "No such extension/context 150@nosuchcontext" in delivered[0][0]


async def test_pump_holds_blocks_for_the_next_listing() -> None:
    """The test switch: blocks wait (take_held) until switched off, then go out."""
    clock = Clock()
    asterisk = SimulatedAsterisk(clock=clock, wall_clock=clock.wall)
    delivered: list[list[str]] = []
    pump = ConsolePump(asterisk, lambda console, blocks: delivered.append(blocks))
    first, second = asterisk.open_console(), asterisk.open_console()
    pump.hold(True)
    asterisk.execute(DOOMED)
    clock.t = 1.0
    pump.flush()
    assert delivered == [] and len(pump.take_held(first)) == 1
    pump.hold(False)
    assert len(delivered) == 1 and pump.take_held(second) == []


def test_the_notice_precedes_the_first_listing_without_the_pair() -> None:
    """Even on a clock that moves at every read, a server that runs each command at the
    instant it flushed (before_command()) never lists the pair gone before its NOTICE."""
    ticks = iter(n * 0.0006 for n in range(10_000))  # the NOTICE falls between two reads
    asterisk = SimulatedAsterisk(clock=lambda: next(ticks), wall_clock=lambda: EPOCH)
    delivered: list[str] = []
    pump = ConsolePump(asterisk, lambda console, blocks: delivered.extend(blocks))
    console = asterisk.open_console()
    asterisk.execute(DOOMED, console)
    seen = []
    for _ in range(20):
        at = pump.before_command()
        listed = "-00000000;1" in asterisk.execute(LISTING, console, at=at).output
        seen.append(listed)
        assert listed or any("NOTICE" in block for block in delivered)
    assert seen[0] and not seen[-1]
