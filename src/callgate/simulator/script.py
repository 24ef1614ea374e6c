"""What the consoles read about one call: its verbose and log lines, as a pure function of it.

The lines and their order are those of ``recordings/asterisk/console-verbose-outcomes.repr.txt``
(a remote console at verbose 3 while a wrong-context call, an agent who is busy, a customer who
is busy, a customer who does not answer within ``Dial(…,5)`` and an answered call ran). Where
the recording shows nothing, the text follows Asterisk 22.7's source, function by function:

* customer congestion: app_dial.c wait_for_answer(), ``"%s is circuit-busy"`` and the
  busy/congested line's counts ``(lines:busy/congestion/nochan)`` from handle_cause();
* the end of an answered call after ``Wait(talk)``: pbx.c pbx_extension_helper() for the
  ``Hangup()`` step and __ast_pbx_run() for ``Spawn extension … exited non-zero``, then
  bridge_channel.c bridge_channel_internal_pull() (``left``) for both ``;1`` legs;
* a customer whose ``Wait()`` runs out: pbx.c __ast_pbx_run()'s ``Auto fallthrough`` (no
  DIALSTATUS: ``UNKNOWN``), then wait_for_answer() counts the hangup (cause 0) as ``nochan``;
* an agent that never answers: main/dial.c prints nothing on its timeout, only the agent's
  ``Spawn extension`` when its ``;1`` is hung up;
* a Dial to a Local channel that does not exist: core_local.c's NOTICE, then app_dial.c's
  ``Couldn't call <peer>``.

Where several lines come at one instant the order is one the recording shows (it varies
between runs there: Asterisk's threads race).
"""

from __future__ import annotations

from callgate.simulator import logtext
from callgate.simulator.logtext import ConsoleLine
from callgate.simulator.timeline import (
    AGENT_ANSWER_WAIT,
    ANSWER,
    ANSWER_SETTLE,
    BUSY,
    HANGUP_PRIORITY,
    NEVER_ANSWER_WAIT,
    REFUSAL_APP,
    REFUSAL_ARG,
    SETTLE,
    Call,
    Ending,
    dialplan_arg,
)


def console_script(call: Call) -> list[ConsoleLine]:
    """Every line ``call`` writes to the consoles, in time order, as far as it is known.

    Lines that need a name or an id not handed out yet (the customer pair, the bridge) are
    left out until the engine has applied that event; ``Call.next_event()`` says when.
    """
    key = (call.customer is not None, call.bridge_id, call.hangup_at)
    if call.script_cache is not None and call.script_cache[0] == key:
        return call.script_cache[1]
    lines = _Lines(call)
    if not call.doomed:
        _start(lines)
        _agent_answer(lines)
        _customer_outcome(lines)
    _ending(lines)
    script = sorted(lines.items, key=lambda line: line.at)  # stable: same-instant order kept
    call.script_cache = (key, script)
    return script


class _Lines:
    """Collects a call's lines, keeping only those that happened before it ended."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.end = call.end()
        self.cutoff = call.next_event()  # lines from here on wait for a name or an id
        self.items: list[ConsoleLine] = []

    def say(self, offset: float, level: int, message: str) -> None:
        """A verbose message at ``offset`` seconds after the originate."""
        self._keep(offset, level, logtext.verbose(level, message))

    def notice(self, offset: float, message: str) -> None:
        """A log line (core_local.c's NOTICE) at ``offset`` seconds after the originate."""
        wall = self.call.wall_started + offset
        self._keep(offset, None, logtext.notice(wall, self.call.log_thread, message))

    def _keep(self, offset: float, level: int | None, text: str) -> None:
        at = self.call.started + offset
        if at <= self.end and (self.cutoff is None or at < self.cutoff):
            self.items.append(ConsoleLine(at, level, text))


def _start(lines: _Lines) -> None:
    """The originate's dial reaches the agent and its dialplan's first steps run."""
    call = lines.call
    step = _Steps(lines, call.exten, call.context, call.agent.second)
    lines.say(SETTLE, 3, f"Called {call.device}")
    outcome = call.scenario.agent_outcome
    if outcome != ANSWER:
        step.run(SETTLE, 1, "NoOp", f"agent {outcome}")
        step.run(SETTLE, 2, REFUSAL_APP[outcome], REFUSAL_ARG)
        return
    never = call.scenario.agent_answer_after is None
    step.run(SETTLE, 1, "NoOp", "agent never answers" if never else f"agent leg {call.exten}")
    step.run(SETTLE, 2, "Ringing", "")
    step.run(SETTLE, 3, "Wait", dialplan_arg(NEVER_ANSWER_WAIT if never else call.agent_wait()))
    lines.say(SETTLE, 3, f"{call.agent.first} is ringing")


def _agent_answer(lines: _Lines) -> None:
    """The agent answers; the originate's application (Dial) starts on the agent's ``;1``."""
    call, plan = lines.call, lines.call.plan
    if plan.answer is None:
        return
    step = _Steps(lines, call.exten, call.context, call.agent.second)
    step.run(plan.answer, 4, "Answer", "")
    lines.say(plan.answer, 3, f"{call.agent.first} answered")
    if plan.ending is Ending.DIAL_FAILED and call.target is not None:
        lines.notice(plan.answer, logtext.no_such_extension(*call.target))
        lines.say(plan.answer, 3, f"Couldn't call {call.peer}")
    elif call.customer is not None and call.target is not None and call.customer_rings():
        _customer_rings(lines, plan.answer)
    step.run(plan.answer + AGENT_ANSWER_WAIT, 5, "Wait", dialplan_arg(call.scenario.agent_hold))


def _customer_rings(lines: _Lines, at: float) -> None:
    """Dial calls the customer, whose dialplan starts ringing."""
    call = lines.call
    assert call.customer is not None and call.target is not None
    phone, phone_ctx = call.target
    step = _Steps(lines, phone, phone_ctx, call.customer.second)
    lines.say(at, 3, f"Called {call.peer}")
    step.run(at, 1, "NoOp", _customer_noop(call))
    step.run(at, 2, "Ringing", "")
    step.run(at, 3, "Wait", dialplan_arg(call.scenario.customer_wait))
    lines.say(at, 3, f"{call.customer.first} is ringing")


def _customer_noop(call: Call) -> str:
    """The NoOp() of the recording's dialplan for each kind of customer."""
    s = call.scenario
    if s.customer_answer_after is None or s.customer_answer_after >= s.customer_ring_timeout:
        return "customer never answers"
    if s.customer_outcome == ANSWER:
        return f"external {call.target[0] if call.target else ''}"
    return f"customer {s.customer_outcome}"


def _customer_outcome(lines: _Lines) -> None:
    """The customer answers (and both legs are bridged), or its dialplan refuses the call."""
    call, plan = lines.call, lines.call.plan
    if plan.outcome is None or call.customer is None or call.target is None:
        return
    phone, phone_ctx = call.target
    step = _Steps(lines, phone, phone_ctx, call.customer.second)
    outcome = call.scenario.customer_outcome
    if outcome != ANSWER:
        step.run(plan.outcome, 4, REFUSAL_APP[outcome], REFUSAL_ARG)
        return
    step.run(plan.outcome, 4, "Answer", "")
    lines.say(plan.outcome, 3, f"{call.customer.first} answered {call.agent.first}")
    for pair in (call.customer, call.agent):
        lines.say(plan.outcome, 3, logtext.bridge_change(pair.first, "joined", _bridge(call)))
    step.run(plan.outcome + ANSWER_SETTLE, 5, "Wait", dialplan_arg(call.scenario.talk))


def _ending(lines: _Lines) -> None:
    """The lines of the call's last instant, by the reason it ends."""
    call = lines.call
    offset = call.end() - call.started
    ending = call.ending()
    if ending is Ending.DOOMED:
        lines.notice(offset, logtext.no_such_extension(call.exten, call.context))
    elif ending is Ending.AGENT_REFUSED:
        lines.say(offset, 3, f"{call.agent.first} {_refusal(call.scenario.agent_outcome)}")
        _agent_spawn_exit(lines, offset)
    elif ending is Ending.CUSTOMER_REFUSED:
        _customer_refused(lines, offset)
    elif ending is Ending.DIAL_TIMEOUT:
        lines.say(offset, 3, f"Nobody picked up in {call.dial_timeout_ms} ms")
        _agent_spawn_exit(lines, offset)
        _customer_spawn_exit(lines, offset)
    elif ending is Ending.RING_TIMEOUT:
        _ring_timeout(lines, offset)
    elif ending is Ending.TALK_END:
        _talk_end(lines, offset)
    elif ending is Ending.AGENT_HOLD_END:
        _agent_hold_end(lines, offset)
    elif ending is Ending.HANGUP:
        _hung_up(lines, offset)
    else:  # the originate gave up, or the agent's Dial failed or is not simulated
        _agent_spawn_exit(lines, offset)


def _refusal(outcome: str) -> str:
    """main/dial.c's and app_dial.c's words for a Busy() or a Congestion() at the far end."""
    return "is busy" if outcome == BUSY else "is circuit-busy"


def _customer_refused(lines: _Lines, offset: float) -> None:
    call = lines.call
    if call.customer is None:
        return
    outcome = call.scenario.customer_outcome
    lines.say(offset, 3, f"{call.customer.first} {_refusal(outcome)}")
    busy = int(outcome == BUSY)
    lines.say(offset, 2, logtext.everyone_busy(busy, 1 - busy, 0))
    _customer_spawn_exit(lines, offset)
    _agent_spawn_exit(lines, offset)


def _ring_timeout(lines: _Lines, offset: float) -> None:
    call = lines.call
    if call.customer is not None:
        status = f"Auto fallthrough, channel '{call.customer.second}' status is 'UNKNOWN'"
        lines.say(offset, 3, status)
    lines.say(offset, 2, logtext.everyone_busy(0, 0, 1))
    _agent_spawn_exit(lines, offset)


def _talk_end(lines: _Lines, offset: float) -> None:
    """The customer's dialplan reaches Hangup(); the bridge dissolves; the agent follows."""
    call = lines.call
    if call.customer is None or call.target is None:
        return
    phone, phone_ctx = call.target
    _Steps(lines, phone, phone_ctx, call.customer.second).run(offset, HANGUP_PRIORITY, "Hangup", "")
    _customer_spawn_exit(lines, offset, priority=HANGUP_PRIORITY)
    for pair in (call.customer, call.agent):
        lines.say(offset, 3, logtext.bridge_change(pair.first, "left", _bridge(call)))
    _agent_spawn_exit(lines, offset)


def _agent_hold_end(lines: _Lines, offset: float) -> None:
    """The agent's dialplan reaches Hangup(); the customer's side follows."""
    call = lines.call
    step = _Steps(lines, call.exten, call.context, call.agent.second)
    step.run(offset, HANGUP_PRIORITY, "Hangup", "")
    _agent_spawn_exit(lines, offset, priority=HANGUP_PRIORITY)
    if call.customer is None or not call.customer_rings():
        return
    if call.bridged(offset):
        for pair in (call.agent, call.customer):
            lines.say(offset, 3, logtext.bridge_change(pair.first, "left", _bridge(call)))
    _customer_spawn_exit(lines, offset)


def _hung_up(lines: _Lines, offset: float) -> None:
    """``channel request hangup``: the recording's order, the customer's side first."""
    call = lines.call
    bridged = call.bridged(offset)
    if call.customer is not None and call.customer_rings():
        _customer_spawn_exit(lines, offset)
        if bridged:
            lines.say(offset, 3, logtext.bridge_change(call.customer.first, "left", _bridge(call)))
    if offset >= SETTLE:  # the agent's dialplan has started, so it has something to end
        _agent_spawn_exit(lines, offset)
    if bridged:
        lines.say(offset, 3, logtext.bridge_change(call.agent.first, "left", _bridge(call)))


def _agent_spawn_exit(lines: _Lines, offset: float, *, priority: int | None = None) -> None:
    """The agent's dialplan ends at ``offset``, in the step it was in then."""
    call = lines.call
    step = priority if priority is not None else call.agent_priority(offset)
    lines.say(offset, 2, logtext.spawn_exited(call.context, call.exten, step, call.agent.second))


def _customer_spawn_exit(lines: _Lines, offset: float, *, priority: int | None = None) -> None:
    """The customer's dialplan ends at ``offset``, in the step it was in then."""
    call = lines.call
    if call.customer is None or call.target is None:
        return
    phone, phone_ctx = call.target
    step = priority if priority is not None else call.customer_priority(offset)
    lines.say(offset, 2, logtext.spawn_exited(phone_ctx, phone, step, call.customer.second))


def _bridge(call: Call) -> str:
    return call.bridge_id or ""


class _Steps:
    """The ``Executing [...]`` lines of one channel's dialplan."""

    def __init__(self, lines: _Lines, exten: str, context: str, channel: str) -> None:
        self._lines = lines
        self._where = (exten, context)
        self._channel = channel

    def run(self, offset: float, priority: int, app: str, data: str) -> None:
        exten, context = self._where
        text = logtext.executing(exten, context, priority, app, self._channel, data)
        self._lines.say(offset, 3, text)
