"""LinesSoon: log lines written at the event loop's next turn, in order, each once."""

from __future__ import annotations

import asyncio

from callgate.logs import LinesSoon


async def test_lines_wait_for_the_next_turn_and_keep_their_order() -> None:
    written: list[tuple[str, dict[str, object]]] = []

    def write(event: str, **values: object) -> None:
        written.append((event, values))

    lines = LinesSoon()
    lines.add(write, "first", n=1)
    lines.add(write, "second", n=2)
    assert written == []  # nothing yet: the caller goes on to its await first
    await asyncio.sleep(0)
    assert written == [("first", {"n": 1}), ("second", {"n": 2})]
    lines.add(write, "third")
    lines.flush()  # a later line is due now: the waiting ones go first
    write("after")
    await asyncio.sleep(0)  # the scheduled turn finds nothing left to write
    assert [event for event, _ in written] == ["first", "second", "third", "after"]


async def test_two_turns_let_a_task_created_meanwhile_go_first() -> None:
    """`turns=2`: a task created right after the line (a bounded database step) starts, and
    sends its request, before the line is written."""
    order: list[str] = []
    lines = LinesSoon(turns=2)
    lines.add(lambda event: order.append(event), "line")

    async def step() -> None:
        order.append("request sent")

    task = asyncio.ensure_future(step())
    await task
    await asyncio.sleep(0)
    assert order == ["request sent", "line"]
