"""A goal's line in a report: what it asks, whether this run met it, and its numbers."""

from __future__ import annotations

# (goal, met, numbers); met is None for a goal out of reach on this machine: even the floors
# of what it measures miss it, so no implementation could meet it here.
Goal = tuple[str, bool | None, str]
STATUS = {True: "met", False: "NOT MET", None: "out of reach here"}


def goal_lines(goals: list[Goal]) -> list[str]:
    """A line per goal with its status, then the count of those met (and out of reach)."""
    lines = [f"- **{STATUS[met]}**: {goal}: {numbers}" for goal, met, numbers in goals]
    met_count = sum(1 for _, met, _ in goals if met)
    beyond = sum(1 for _, met, _ in goals if met is None)
    summary = f"{met_count} of {len(goals)} goals met"
    if beyond:
        summary += f"; {beyond} out of reach on this machine (its floors alone miss it)"
    return [*lines, "", summary + "."]
