"""A transport that is not SSH at all: each command runs on an in-process simulated Asterisk
(``callgate.simulator.engine``), which answers as a real Asterisk 22.7 does.

It is one module plus its registration, as a real second transport would be (see
``callgate/pbx/registry.py``): a host whose ``pbx_hosts.transport`` is ``memory`` is reached
through it, whatever CALLGATE_TRANSPORT says.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from callgate import errors
from callgate.pbx.parsing import checked_answers
from callgate.pbx.registry import TRANSPORTS, Shared
from callgate.pbx.transport import HostTarget
from callgate.simulator.engine import SimulatedAsterisk

NAME = "memory"


class MemoryTransport:
    """One simulated Asterisk for every host; ``unreachable`` hosts (addresses) refuse, as a
    transport reports a host it cannot reach."""

    def __init__(self) -> None:
        self.engine = SimulatedAsterisk()
        self.unreachable: set[str] = set()
        self.runs: list[tuple[str, list[str]]] = []  # (host label, commands) in order

    async def run(
        self, target: HostTarget, commands: Sequence[str], *, notices: list[str] | None = None
    ) -> list[str]:
        await asyncio.sleep(0)  # a real transport waits for its answer
        if target.address in self.unreachable:
            raise errors.PbxUnreachable(f"no memory PBX at {target.label}", host=target.label)
        self.runs.append((target.label, list(commands)))
        answers = [self.engine.execute(command).output for command in commands]
        return checked_answers(answers, target.label)

    def originates(self) -> int:
        return sum(c.command.startswith("channel originate") for c in self.engine.commands)

    def status(self) -> dict[str, object]:
        return {"memory": {"runs": len(self.runs)}}

    async def aclose(self) -> None:
        return None


BUILT: list[MemoryTransport] = []  # every one a service built, the newest last


def build(shared: Shared) -> MemoryTransport:
    transport = MemoryTransport()
    BUILT.append(transport)
    return transport


TRANSPORTS.register(NAME, build)
