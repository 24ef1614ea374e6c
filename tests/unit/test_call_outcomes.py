"""Why each side of a call ended (calls.outcomes): every row of decide()'s table, with and
without Asterisk's own words."""

from __future__ import annotations

import pytest

from callgate.domain.outcomes import Seen, SideOutcome, SideResult, Sides, Words, decide
from callgate.domain.states import LIVE, ORIGINATE_TIMEOUT, CallState

S, R = CallState, SideOutcome
REASON = "No such extension/context 150@nosuchcontext while calling Local channel"


def seen(
    ended: float,
    agent: float | None = None,
    pair: float | None = None,
    connected: float | None = None,
) -> Seen:
    """Times in seconds since the originate (at 100 on the clock, to catch a lost offset)."""

    def at(moment: float | None) -> float | None:
        return None if moment is None else 100.0 + moment

    return Seen(100.0, 100.0 + ended, at(agent), at(pair), at(connected))


def test_completed_both_answered_with_their_ring_times() -> None:
    """Agent rang 1.2 s, customer 2.3 s from the agent's answer, then they talked."""
    sides = decide(S.COMPLETED, seen(ended=30, agent=1.2, pair=1.2, connected=3.5))
    assert sides == Sides(SideResult(R.ANSWERED, 1.2), SideResult(R.ANSWERED, 2.3))


def test_completed_with_skipped_phases_takes_the_latest_proof() -> None:
    """A slow poll saw `connected` first: the agent had answered by then, the customer rang 0 s
    as far as anyone can tell; a resumed call without stored times has no ring times."""
    assert decide(S.COMPLETED, seen(ended=9, connected=4.0)) == Sides(
        SideResult(R.ANSWERED, 4.0), SideResult(R.ANSWERED, 0.0)
    )
    assert decide(S.COMPLETED, seen(ended=9)) == Sides(
        SideResult(R.ANSWERED, None), SideResult(R.ANSWERED, None)
    )


def test_customer_no_answer_is_unknown_without_asterisks_word() -> None:
    """A listing cannot tell busy, no answer and congestion apart: `unknown`, not a guess."""
    sides = decide(S.CUSTOMER_NO_ANSWER, seen(ended=7.0, agent=1.0, pair=1.0))
    assert sides == Sides(SideResult(R.ANSWERED, 1.0), SideResult(R.UNKNOWN, 6.0))


@pytest.mark.parametrize(
    ("rang", "outcome"),
    [
        (ORIGINATE_TIMEOUT + 0.4, R.NO_ANSWER),  # the originate's own timeout: a fact
        (ORIGINATE_TIMEOUT - 0.8, R.NO_ANSWER),  # within the one-poll slack
        (ORIGINATE_TIMEOUT - 1.2, R.UNKNOWN),  # ended earlier: rejected? busy? nobody said
        (4.0, R.UNKNOWN),
    ],
)
def test_agent_no_answer_is_no_answer_only_after_the_originate_timeout(
    rang: float, outcome: SideOutcome
) -> None:
    sides = decide(S.AGENT_NO_ANSWER, seen(ended=rang))
    assert sides == Sides(SideResult(outcome, round(rang, 3)), None)


def test_agent_no_answer_against_another_originate_timeout() -> None:
    """The threshold is the originate's timeout (a simulator's may be shorter)."""
    assert decide(S.AGENT_NO_ANSWER, seen(ended=1.1), originate_timeout=1.0).agent == SideResult(
        R.NO_ANSWER, 1.1
    )
    assert decide(S.AGENT_NO_ANSWER, seen(ended=1.1)).agent == SideResult(R.UNKNOWN, 1.1)


def test_canceled_while_the_agent_rang() -> None:
    assert decide(S.CANCELED, seen(ended=2.5)) == Sides(SideResult(R.CANCELED, 2.5), None)


def test_canceled_while_the_customer_rang() -> None:
    sides = decide(S.CANCELED, seen(ended=4.0, agent=1.0, pair=1.0))
    assert sides == Sides(SideResult(R.ANSWERED, 1.0), SideResult(R.CANCELED, 3.0))


def test_canceled_while_they_talked() -> None:
    sides = decide(S.CANCELED, seen(ended=9.0, agent=1.0, pair=1.0, connected=3.0))
    assert sides == Sides(SideResult(R.ANSWERED, 1.0), SideResult(R.ANSWERED, 2.0))


def test_failed_agent_with_the_reason_and_no_customer() -> None:
    sides = decide(S.FAILED, seen(ended=0.02), reason=REASON)
    assert sides == Sides(SideResult(R.FAILED, None, REASON), None)
    # Nothing was created, so no word of Asterisk can be about it.
    words = Words(agent=R.BUSY, customer=R.BUSY)
    assert decide(S.FAILED, seen(ended=0.02), reason=REASON, words=words) == sides


def test_lost_before_the_agent_answered() -> None:
    """The end of a lost call is when the tracker gave up: no ring time is made of it."""
    assert decide(S.LOST, seen(ended=70.0)) == Sides(SideResult(R.UNKNOWN, None), None)


def test_lost_while_the_customer_rang() -> None:
    sides = decide(S.LOST, seen(ended=70.0, agent=1.5, pair=1.5))
    assert sides == Sides(SideResult(R.ANSWERED, 1.5), SideResult(R.UNKNOWN, None))


def test_lost_after_they_connected() -> None:
    sides = decide(S.LOST, seen(ended=70.0, agent=1.0, connected=2.5))
    assert sides == Sides(SideResult(R.ANSWERED, 1.0), SideResult(R.ANSWERED, 1.5))


@pytest.mark.parametrize("said", [R.BUSY, R.CONGESTION, R.NO_ANSWER])
def test_the_agents_word_wins(said: SideOutcome) -> None:
    """`-- Local/120@inoffice-…;1 is busy`: the agent is busy, not unknown."""
    sides = decide(S.AGENT_NO_ANSWER, seen(ended=0.8), words=Words(agent=said))
    assert sides == Sides(SideResult(said, 0.8), None)


@pytest.mark.parametrize("said", [R.BUSY, R.CONGESTION])
def test_the_customers_word_wins(said: SideOutcome) -> None:
    """`== Everyone is busy/congested at this time (1:1/0/0)` said of the customer's Dial."""
    sides = decide(S.CUSTOMER_NO_ANSWER, seen(ended=2.5, agent=1.0), words=Words(customer=said))
    assert sides == Sides(SideResult(R.ANSWERED, 1.0), SideResult(said, 1.5))


def test_nobody_picked_up_gives_the_ring_time_asterisk_printed() -> None:
    """`-- Nobody picked up in 5000 ms`: no_answer, rung 5 s, whatever the polls saw."""
    sides = decide(
        S.CUSTOMER_NO_ANSWER,
        seen(ended=6.4, agent=1.0),
        words=Words(customer=R.NO_ANSWER, customer_ring_ms=5000),
    )
    assert sides == Sides(SideResult(R.ANSWERED, 1.0), SideResult(R.NO_ANSWER, 5.0))


def test_a_word_of_the_customer_proves_the_agent_answered() -> None:
    """The polls missed the agent's answer; Asterisk's Dial to the customer means it came."""
    sides = decide(S.AGENT_NO_ANSWER, seen(ended=3.0), words=Words(customer=R.BUSY))
    assert sides == Sides(SideResult(R.ANSWERED, None), SideResult(R.BUSY, None))


def test_an_answer_the_polls_missed() -> None:
    """Asterisk said the agent answered: answered (no time seen), the customer dialled: unknown."""
    sides = decide(S.AGENT_NO_ANSWER, seen(ended=3.0), words=Words(agent=R.ANSWERED))
    assert sides == Sides(SideResult(R.ANSWERED, None), SideResult(R.UNKNOWN, None))


def test_a_word_on_a_canceled_or_lost_call() -> None:
    """The word wins there too; a lost call's end still gives no ring time."""
    canceled = decide(S.CANCELED, seen(ended=2.0), words=Words(agent=R.BUSY))
    assert canceled == Sides(SideResult(R.BUSY, 2.0), None)
    lost = decide(S.LOST, seen(ended=70.0, agent=1.0), words=Words(customer=R.CONGESTION))
    assert lost == Sides(SideResult(R.ANSWERED, 1.0), SideResult(R.CONGESTION, None))


def test_an_agent_that_said_busy_never_reached_the_customer() -> None:
    """The agent's word wins over the listing's answer; then nobody dialled the customer."""
    sides = decide(S.CUSTOMER_NO_ANSWER, seen(ended=2.0, agent=1.0), words=Words(agent=R.BUSY))
    assert sides == Sides(SideResult(R.BUSY, 2.0), None)


@pytest.mark.parametrize("outcome", [R.CANCELED, R.FAILED, R.UNKNOWN])
def test_asterisk_is_not_taken_to_say_what_its_lines_cannot(outcome: SideOutcome) -> None:
    """No console line says canceled, failed or unknown: such a word is no word at all."""
    words = Words(agent=outcome, customer=outcome, customer_ring_ms=5000)
    assert decide(S.AGENT_NO_ANSWER, seen(ended=3.0), words=words) == decide(
        S.AGENT_NO_ANSWER, seen(ended=3.0)
    )
    unanswered = seen(ended=4.0, agent=1.0)
    assert decide(S.CUSTOMER_NO_ANSWER, unanswered, words=words).customer == SideResult(
        R.UNKNOWN, 3.0
    )


def test_milliseconds_without_a_word_are_not_a_ring_time() -> None:
    """The printed ms come with Asterisk's word of the customer, never alone."""
    unanswered = seen(ended=4.0, agent=1.0)
    alone = decide(S.CUSTOMER_NO_ANSWER, unanswered, words=Words(customer_ring_ms=5000))
    assert alone.customer == SideResult(R.UNKNOWN, 3.0)


@pytest.mark.parametrize("state", LIVE)
def test_a_live_call_has_no_outcome_yet(state: CallState) -> None:
    with pytest.raises(ValueError, match="has not ended"):
        decide(state, seen(ended=1.0))


def test_the_values_are_the_apis() -> None:
    """Stored and shown as they are: a rename is an API change (and needs a migration)."""
    assert [outcome.value for outcome in SideOutcome] == [
        "answered",
        "busy",
        "congestion",
        "no_answer",
        "canceled",
        "failed",
        "unknown",
    ]
