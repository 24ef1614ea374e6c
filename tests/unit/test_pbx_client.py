"""PbxClient's verified originate, on a scripted transport (a unit: no SSH, no PBX)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from callgate import errors
from callgate.pbx.client import PbxClient
from callgate.pbx.transport import HostTarget

FIRST_LEG = (
    "Local/150@inoffice-0000000a;1!inoffice!150!1!Ringing!AppDial2!(Outgoing Line)!!!!3!0!!1.1\n"
)
TARGET = HostTarget("10.0.0.5", 5059, "callgate")


class ScriptedTransport:
    """Answers each run() with the next scripted outputs, or raises the next error."""

    def __init__(self, *steps: list[str] | errors.PbxError) -> None:
        self.steps = list(steps)
        self.runs: list[list[str]] = []

    async def run(self, target: HostTarget, commands: Sequence[str]) -> list[str]:
        self.runs.append(list(commands))
        step = self.steps.pop(0)
        if isinstance(step, errors.PbxError):
            raise step
        return step

    def status(self) -> dict[str, object]:
        return {}

    async def aclose(self) -> None:
        return None


async def test_verified_when_the_first_leg_appears() -> None:
    """The new `;1` channel in the listing is the proof, and it is credited once."""
    transport = ScriptedTransport(["", FIRST_LEG], ["", FIRST_LEG], *([[FIRST_LEG]] * 50))
    client = PbxClient(transport, verify_window=0.2, poll_interval=0.01)
    placed = await client.originate(TARGET, "150", "+375296254070")
    assert placed.channel.name == "Local/150@inoffice-0000000a;1"
    with pytest.raises(errors.CallNotCreated):  # the same channel cannot prove a second call
        await client.originate(TARGET, "150", "+375296254071")


async def test_no_channel_is_a_call_not_created() -> None:
    """An empty answer and no channel within the window: CallNotCreated."""
    transport = ScriptedTransport(["", ""], *([[""]] * 50))
    client = PbxClient(transport, verify_window=0.1, poll_interval=0.01)
    with pytest.raises(errors.CallNotCreated):
        await client.originate(TARGET, "150", "+375296254070")


async def test_a_failed_check_after_the_originate_is_an_unknown_outcome() -> None:
    """The originate ran; a refused connection while checking must not read as `not dialled`."""
    refused = errors.SshConnectionRefused("SSH connection to 10.0.0.5:5059 refused")
    transport = ScriptedTransport(["", ""], refused)
    client = PbxClient(transport, verify_window=0.5, poll_interval=0.01)
    with pytest.raises(errors.PbxError) as caught:
        await client.originate(TARGET, "150", "+375296254070")
    assert caught.value.maybe_executed
    assert "may exist" in caught.value.message


async def test_a_failure_after_the_first_command_of_the_run_is_unknown() -> None:
    """A transport reporting one completed command (the originate): outcome unknown."""
    busy = errors.PbxBusy("no console free")
    busy.completed = 1
    client = PbxClient(ScriptedTransport(busy), verify_window=0.1, poll_interval=0.01)
    with pytest.raises(errors.PbxError) as caught:
        await client.originate(TARGET, "150", "+375296254070")
    assert caught.value.maybe_executed


async def test_a_failure_before_anything_ran_is_not_dialled() -> None:
    """Refused before the originate: the error stays `not executed`."""
    refused = errors.SshConnectionRefused("refused")
    client = PbxClient(ScriptedTransport(refused), verify_window=0.1, poll_interval=0.01)
    with pytest.raises(errors.SshConnectionRefused) as caught:
        await client.originate(TARGET, "150", "+375296254070")
    assert not caught.value.maybe_executed
