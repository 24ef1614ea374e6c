"""The call state machine against what a real Asterisk 22.7 printed (recordings/asterisk)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from callgate.calls.channels import CallChannels, assign_channels, derive
from callgate.domain.states import (
    LIVE,
    TERMINAL,
    CallState,
    can_transition,
    durations,
    is_terminal,
    steps,
)
from callgate.pbx.parsing import parse_channels
from tests.support.transcripts import exchanges, snapshots

S = CallState
ANSWERED_FIRST = "Local/150@inoffice-00000006"
PHONE = "+375296254070"


def follow(name: str, first_base: str) -> list[tuple[CallState, str]]:
    """Feed every snapshot of a lifecycle transcript to derive(); the transitions recorded."""
    state, recorded = S.INITIATED, []
    for at, listing in snapshots(name):
        channels = CallChannels.split(parse_channels(listing), first_base)
        new, reason = derive(channels, state, at)
        recorded += [(step, reason) for step in (steps(state, new) if new is not state else ())]
        state = new
    return recorded


def test_answered_transcript_gives_the_whole_sequence() -> None:
    """Answered call: ringing agent, agent answered, ringing customer, connected, completed."""
    recorded = follow("call-lifecycle-answered.txt", ANSWERED_FIRST)
    assert [state for state, _ in recorded] == [
        S.RINGING_AGENT,
        S.AGENT_ANSWERED,
        S.RINGING_CUSTOMER,
        S.CONNECTED,
        S.COMPLETED,
    ]
    assert recorded[-1][1] == "hung up after the conversation"


def test_each_answered_snapshot_derives_its_own_state() -> None:
    """Snapshot by snapshot (t=0.03, 1.04, 3.02, 3.58, 23.54) the derived state is as seen."""
    state, derived = S.INITIATED, []
    for at, listing in snapshots("call-lifecycle-answered.txt"):
        state, _ = derive(CallChannels.split(parse_channels(listing), ANSWERED_FIRST), state, at)
        derived.append(state)
    assert derived == [S.RINGING_AGENT, S.RINGING_CUSTOMER, S.CONNECTED, S.CONNECTED, S.COMPLETED]


def test_agent_no_answer_transcript() -> None:
    """The agent never answers: ringing, then all gone at +30.10 s: agent_no_answer (timeout)."""
    recorded = follow("call-lifecycle-agent-no-answer.txt", "Local/199@inoffice-00000008")
    assert [state for state, _ in recorded] == [S.RINGING_AGENT, S.AGENT_NO_ANSWER]
    assert "30 s timeout" in recorded[-1][1]


def test_agent_answered_before_the_customer_pair_appears() -> None:
    """First leg Up in Dial with no customer pair yet: agent_answered."""
    _, listing = snapshots("call-lifecycle-answered.txt")[1]
    first_only = [c for c in parse_channels(listing) if c.base_name == ANSWERED_FIRST]
    assert (
        derive(CallChannels(first=tuple(first_only)), S.RINGING_AGENT, 1.0)[0] is S.AGENT_ANSWERED
    )


@pytest.mark.parametrize(
    ("previous", "elapsed", "ended"),
    [
        (S.INITIATED, 0.5, S.AGENT_NO_ANSWER),
        (S.RINGING_AGENT, 12.0, S.AGENT_NO_ANSWER),
        (S.AGENT_ANSWERED, 3.0, S.CUSTOMER_NO_ANSWER),
        (S.RINGING_CUSTOMER, 40.0, S.CUSTOMER_NO_ANSWER),
        (S.CONNECTED, 60.0, S.COMPLETED),
    ],
)
def test_all_gone_ends_by_the_last_state(
    previous: CallState, elapsed: float, ended: CallState
) -> None:
    """Every channel gone: the ending follows from how far the call had got."""
    state, reason = derive(CallChannels(), previous, elapsed)
    assert state is ended and can_transition(previous, state) and reason


def test_derive_never_goes_back_and_an_end_stays() -> None:
    """A listing showing less than known changes nothing; a terminal state is kept."""
    _, ringing = snapshots("call-lifecycle-answered.txt")[0]
    channels = CallChannels.split(parse_channels(ringing), ANSWERED_FIRST)
    assert derive(channels, S.CONNECTED, 5.0) == (S.CONNECTED, "no change")
    assert derive(channels, S.CANCELED, 5.0)[0] is S.CANCELED


def test_transition_table() -> None:
    """Forward only, skipping allowed; failed only from initiated; canceled/lost from any live."""
    for rank, state in enumerate(LIVE):
        assert {later for later in LIVE if can_transition(state, later)} == set(LIVE[rank + 1 :])
        assert can_transition(state, S.CANCELED) and can_transition(state, S.LOST)
        assert not can_transition(state, state)
    assert [s for s in CallState if can_transition(s, S.FAILED)] == [S.INITIATED]
    assert [s for s in CallState if can_transition(s, S.COMPLETED)] == [S.CONNECTED]
    assert can_transition(S.RINGING_AGENT, S.CONNECTED)  # a slow poll skips states
    assert not can_transition(S.CONNECTED, S.RINGING_CUSTOMER)
    assert not can_transition(S.RINGING_CUSTOMER, S.AGENT_NO_ANSWER)
    assert not can_transition(S.CONNECTED, S.CUSTOMER_NO_ANSWER)


def test_terminal_states() -> None:
    """Six terminal states, none of which can be left."""
    expected = {"completed", "failed", "agent_no_answer", "customer_no_answer", "canceled", "lost"}
    assert {state.value for state in TERMINAL} == expected
    for state in CallState:
        assert is_terminal(state) is state.is_terminal is (state.value in expected)
        if state.is_terminal:
            assert not any(can_transition(state, other) for other in CallState)


def test_steps_record_the_coincident_answer_only() -> None:
    """Ringing the customer proves the agent answered that instant; other skips stay skips."""
    assert steps(S.RINGING_AGENT, S.RINGING_CUSTOMER) == (S.AGENT_ANSWERED, S.RINGING_CUSTOMER)
    assert steps(S.AGENT_ANSWERED, S.RINGING_CUSTOMER) == (S.RINGING_CUSTOMER,)
    assert steps(S.RINGING_AGENT, S.CONNECTED) == (S.CONNECTED,)


def test_durations_from_stored_times() -> None:
    """Ringing, customer ringing, talk and total come from the transition times."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    at = [t0 + timedelta(seconds=s) for s in (1.0, 3.0, 23.0)]
    answered = durations(t0, *at)
    assert (answered.agent_ringing, answered.customer_ringing) == (1.0, 2.0)
    assert (answered.talk, answered.total) == (20.0, 23.0)
    unanswered = durations(t0, None, None, t0 + timedelta(seconds=30))
    assert (unanswered.agent_ringing, unanswered.customer_ringing) == (None, None)
    assert (unanswered.talk, unanswered.total) == (None, 30.0)


@dataclass
class Call:
    """A followed call as the tracker keeps it (states.Followed)."""

    call_id: str
    first_base: str
    answered: float = math.inf
    first_uniqueid: str = ""
    customer_base: str = ""
    started: float = 0.0
    state: CallState = S.RINGING_AGENT
    customer_prefix: str = f"Local/{PHONE}@inoffice-"
    extension: str = "150"


def listings() -> list[str]:
    """The CLI transcript's three live `core show channels concise` answers."""
    found = [e.output for e in exchanges() if e.command == "core show channels concise"]
    return [output for output in found if output]


def test_three_calls_of_one_phone_keep_their_own_legs() -> None:
    """Transcript: 150 calls one phone thrice; the bridged pair goes to its first leg only."""
    calls = [Call(c, f"Local/150@inoffice-0000000{n}") for c, n in (("a", 0), ("b", 2), ("c", 4))]
    found = assign_channels(parse_channels(listings()[1]), calls, now=5.0)
    assert {c.name for c in found["a"].customer} == {
        f"Local/{PHONE}@inoffice-00000001;1",
        f"Local/{PHONE}@inoffice-00000001;2",
    }
    assert found["b"].customer == found["c"].customer == ()
    assert [len(found[c].first) for c in "abc"] == [2, 2, 2]


def test_a_new_customer_pair_goes_to_the_call_whose_agent_answered() -> None:
    """Transcript: 0002 is Up in Dial, 0004 still rings: the new pair 0005 belongs to 0002."""
    calls = [Call("b", "Local/150@inoffice-00000002"), Call("c", "Local/150@inoffice-00000004")]
    found = assign_channels(parse_channels(listings()[2]), calls, now=2.0)
    assert {c.base_name for c in found["b"].customer} == {f"Local/{PHONE}@inoffice-00000005"}
    assert found["c"].customer == ()
    assert derive(found["b"], S.RINGING_AGENT, 2.0)[0] is S.RINGING_CUSTOMER
    assert derive(found["c"], S.RINGING_AGENT, 2.0)[0] is S.RINGING_AGENT


def test_a_channel_reusing_the_name_is_not_the_call() -> None:
    """Another uniqueid, or a resumed call's leg much younger than the call: not its leg."""
    listing = parse_channels(listings()[2])
    known = Call("b", "Local/150@inoffice-00000002", first_uniqueid="1795707000.1")
    resumed = Call("c", "Local/150@inoffice-00000004", started=-120.0)
    found = assign_channels(listing, [known, resumed], now=0.0)
    assert found["b"].gone and found["c"].gone
