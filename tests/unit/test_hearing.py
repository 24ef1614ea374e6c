"""A listening console's lines applied to followed calls: the recording's five calls."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from callgate.calls.hearing import Heed, hear
from callgate.domain.states import CallState
from callgate.pbx.verbose import Heard, Said

S = CallState


@dataclass
class Call:
    """A followed call, as the tracker knows it (``states.Followed``)."""

    call_id: str
    first_base: str
    phone: str
    state: CallState = S.INITIATED
    started: float = 0.0
    answered: float = math.inf
    customer_base: str = ""
    first_uniqueid: str = ""
    extension: str = field(init=False)
    customer_prefix: str = field(init=False)

    def __post_init__(self) -> None:
        self.extension = self.first_base.partition("/")[2].partition("@")[0]
        self.customer_prefix = f"Local/{self.phone}@inoffice-"


def apply(call: Call, heed: Heed | None, now: float) -> None:
    if heed is not None and heed.state is not None:
        call.state = heed.state
        if heed.state is S.AGENT_ANSWERED:
            call.answered = now
    if heed is not None and heed.customer_base:
        call.customer_base = heed.customer_base


def test_an_answered_call_moves_at_each_line() -> None:
    call = Call("a", "Local/151@inoffice-00000065", "+375296254070")
    other = Call("b", "Local/150@inoffice-00000099", "+375296254070")  # same phone, ringing
    lines = [
        (0.001, Heard(Said.RINGING, "Local/151@inoffice-00000065;1"), S.RINGING_AGENT),
        (1.0, Heard(Said.ANSWERED, "Local/151@inoffice-00000065;1"), S.AGENT_ANSWERED),
        (
            1.003,
            Heard(Said.RINGING, "Local/+375296254070@inoffice-00000066;1"),
            S.RINGING_CUSTOMER,
        ),
        (
            3.0,
            Heard(
                Said.ANSWERED,
                "Local/+375296254070@inoffice-00000066;1",
                "Local/151@inoffice-00000065;1",
            ),
            S.CONNECTED,
        ),
    ]
    for now, heard, state in lines:
        heed = hear(heard, [other, call], now)
        assert heed is not None and heed.call_id == "a" and heed.state is state
        apply(call, heed, now)
    assert call.customer_base == "Local/+375296254070@inoffice-00000066"
    assert other.state is S.INITIATED
    ended = hear(Heard(Said.ENDED, "Local/151@inoffice-00000065;2"), [other, call], 23.5)
    assert ended is not None and ended.state is S.COMPLETED


def test_a_busy_agent_says_busy_then_ends_unanswered() -> None:
    call = Call("a", "Local/120@inoffice-00000060", "+375296254070")
    busy = hear(Heard(Said.BUSY, "Local/120@inoffice-00000060;1"), [call], 0.002)
    assert busy == Heed("a", agent_said="busy")
    ended = hear(Heard(Said.ENDED, "Local/120@inoffice-00000060;2"), [call], 0.003)
    assert ended is not None and ended.state is S.AGENT_NO_ANSWER


def test_a_busy_customer_is_the_customers_word() -> None:
    call = Call("a", "Local/150@inoffice-00000061", "+375290000017", S.RINGING_CUSTOMER)
    call.answered, call.customer_base = 1.0, "Local/+375290000017@inoffice-00000062"
    heard = Heard(Said.BUSY, "Local/+375290000017@inoffice-00000062;1")
    assert hear(heard, [call], 2.0) == Heed(
        "a", customer_base="Local/+375290000017@inoffice-00000062", customer_said="busy"
    )
    ended = hear(Heard(Said.ENDED, "Local/150@inoffice-00000061;2"), [call], 2.0)
    assert ended is not None and ended.state is S.CUSTOMER_NO_ANSWER


def test_nobody_picked_up_goes_to_the_one_call_that_rang_that_long() -> None:
    late = Call("a", "Local/150@inoffice-00000063", "+375290000018", S.RINGING_CUSTOMER)
    late.answered = 1.0
    fresh = Call("b", "Local/151@inoffice-00000070", "+375290000019", S.RINGING_CUSTOMER)
    fresh.answered = 5.5
    heard = Heard(Said.NO_ANSWER, ms=5000)
    assert hear(heard, [fresh, late], 6.0) == Heed(
        "a", customer_said="no_answer", customer_ring_ms=5000
    )
    fresh.answered = 1.2  # two calls rang about 5 s: nobody can tell which, so neither
    assert hear(heard, [fresh, late], 6.0) is None


def test_lines_of_calls_not_followed_here_concern_none() -> None:
    call = Call("a", "Local/150@inoffice-00000061", "+375290000017")
    for heard in (
        Heard(Said.RINGING, "Local/150@inoffice-00000099;1"),
        Heard(Said.BUSY, "Local/+375290000017@inoffice-00000062;1"),  # agent not answered yet
        Heard(Said.REFUSED, peer="150@nosuchcontext"),
        Heard(Said.ENDED, "Local/+375290000017@inoffice-00000062;2"),
    ):
        assert hear(heard, [call], 1.0) is None, heard


def test_a_line_never_moves_a_call_back() -> None:
    call = Call("a", "Local/150@inoffice-00000061", "+375290000017", S.CONNECTED)
    assert hear(Heard(Said.RINGING, "Local/150@inoffice-00000061;1"), [call], 5.0) is None
