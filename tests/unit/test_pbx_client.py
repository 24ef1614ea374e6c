"""PbxClient's verified originate, on a scripted transport (a unit: no SSH, no PBX)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, cast

import pytest

from callgate import errors
from callgate.pbx.client import PbxClient
from callgate.pbx.transport import HostTarget
from callgate.pbx.verbose import Heard, Said

FIRST_LEG = (
    "Local/150@inoffice-0000000a;1!inoffice!150!1!Ringing!AppDial2!(Outgoing Line)!!!!3!0!!1.1\n"
)
TARGET = HostTarget("10.0.0.5", 5059, "callgate")


class ScriptedTransport:
    """Answers each run() with the next scripted outputs, or raises the next error."""

    def __init__(self, *steps: list[str] | errors.PbxError, logs: Sequence[str] = ()) -> None:
        self.steps = list(steps)
        self.runs: list[list[str]] = []
        self.logs = list(logs)  # log lines the first run's answers carried (a console's)

    async def run(
        self, target: HostTarget, commands: Sequence[str], *, notices: list[str] | None = None
    ) -> list[str]:
        self.runs.append(list(commands))
        step = self.steps.pop(0)
        if isinstance(step, errors.PbxError):
            raise step
        if notices is not None:
            notices += self.logs
            self.logs = []
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


# The pair right after an originate, good or doomed alike (recordings/asterisk/
# console-verbose-outcomes.repr.txt), then the same pair once a good call's dialplan started.
UNSTARTED = (
    "Local/150@nosuchcontext-0000005f;1!nosuchcontext!150!1!Down!AppDial2!(Outgoing Line)"
    "!!!!3!0!!1796565377.204\n"
    "Local/150@nosuchcontext-0000005f;2!nosuchcontext!150!1!Ring!(None)!!!!!3!0!!1796565377.205\n"
)
WRONG = HostTarget("10.0.0.5", 5059, "callgate", dial_context="nosuchcontext")
NOTICE = (
    "[Dec  6 13:56:17] NOTICE[16379]: core_local.c:753 local_call: No such extension/context "
    "150@nosuchcontext while calling Local channel"
)
STARTED_SECOND = (
    "Local/150@nosuchcontext-0000005f;2!nosuchcontext!150!2!Ring!Ringing!!!!!3!0!!1796565377.205\n"
)


async def test_the_pair_alone_is_not_proof_and_a_vanished_pair_is_not_created() -> None:
    """Unstarted, then gone: the PBX dropped the call, whatever the first listing showed."""
    transport = ScriptedTransport(["", UNSTARTED], [UNSTARTED], [""])
    client = PbxClient(transport, verify_window=1.0, poll_interval=0.01)
    with pytest.raises(errors.CallNotCreated) as caught:
        await client.originate(WRONG, "150", "+375296254070")
    assert caught.value.message == (
        "PBX did not create the call (Local/150@nosuchcontext-0000005f;1 ended before the "
        "dialplan ran it)"
    )
    assert caught.value.outcome == "failed"
    assert len(transport.runs) == 3


async def test_asterisks_notice_is_the_reason() -> None:
    """The console's NOTICE names the refusal, in Asterisk's own words, once the pair is gone."""
    transport = ScriptedTransport(["", UNSTARTED], [""], logs=[NOTICE])
    client = PbxClient(transport, verify_window=1.0, poll_interval=0.01)
    with pytest.raises(errors.CallNotCreated) as caught:
        await client.originate(WRONG, "150", "+375296254070")
    assert caught.value.message == (
        "PBX did not create the call (No such extension/context 150@nosuchcontext while "
        "calling Local channel)"
    )
    assert len(transport.runs) == 2


async def test_a_notice_alone_is_no_verdict() -> None:
    """A notice's words may come from a caller id with a newline in it: while a listing may
    hide our pair (here its line is cut in two by such a caller id), the call is not declared
    refused, and the window ends in an unknown outcome, never `failed`."""
    cut = (
        "Local/150@nosuchcontext-0000005f;1!nosuchcontext!150!1!Down!AppDial2!(Outgoing Line)"
        "!x\n[Dec  6 13:56:17] NOTICE!!!3!0!!1796565377.204\n"
    )
    transport = ScriptedTransport(["", UNSTARTED], *([[cut]] * 200), logs=[NOTICE])
    client = PbxClient(transport, verify_window=0.05, poll_interval=0.01)
    with pytest.raises(errors.CallUnconfirmed):
        await client.originate(WRONG, "150", "+375296254070")


async def test_a_notice_for_another_extension_is_not_ours() -> None:
    other = NOTICE.replace("150@", "151@")
    transport = ScriptedTransport(["", UNSTARTED], [UNSTARTED.replace("!(None)!", "!Wait!")])
    transport.logs = [other]
    client = PbxClient(transport, verify_window=1.0, poll_interval=0.01)
    placed = await client.originate(WRONG, "150", "+375296254070")
    assert placed.checks == 2


async def test_progress_of_the_second_leg_verifies() -> None:
    """`;2` running the dialplan (here `Ringing`) is the proof; `;1` may still be Down."""
    first = UNSTARTED.splitlines(keepends=True)[0]
    transport = ScriptedTransport(["", UNSTARTED], [first + STARTED_SECOND])
    client = PbxClient(transport, verify_window=1.0, poll_interval=0.01)
    placed = await client.originate(WRONG, "150", "+375296254070")
    assert placed.channel.name == "Local/150@nosuchcontext-0000005f;1"
    assert placed.checks == 2


async def test_a_pair_that_never_starts_is_an_unknown_outcome() -> None:
    """Still unstarted when the window ends: it may yet ring, so `unknown`, never `failed`."""
    transport = ScriptedTransport(["", UNSTARTED], *([[UNSTARTED]] * 200))
    client = PbxClient(transport, verify_window=0.05, poll_interval=0.01)
    with pytest.raises(errors.CallUnconfirmed) as caught:
        await client.originate(WRONG, "150", "+375296254070")
    assert caught.value.outcome == "unknown"
    assert "may exist" in caught.value.message


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
    busy = errors.PbxBusy("no console free", completed=1)
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


async def test_a_listened_host_verifies_on_the_heard_line_without_listing_again() -> None:
    """On a host with a listening console, the new ;2 heard running the dialplan is the proof:
    no second listing is asked for."""
    transport = ScriptedTransport(["", UNSTARTED])
    client = PbxClient(transport, verify_window=1.0, poll_interval=0.01)
    client.listening(WRONG, True)
    started = Heard(Said.STARTED, "Local/150@nosuchcontext-0000005f;2")
    loop = asyncio.get_running_loop()
    loop.call_later(0.005, client.heard, WRONG, started)
    placed = await client.originate(WRONG, "150", "+375296254070")
    assert placed.checks == 1 and len(transport.runs) == 1


async def test_a_line_heard_before_the_originate_proves_nothing() -> None:
    """A pair of the same name heard running before this originate (Asterisk restarted and its
    counter began again) is not this call: the listings decide."""
    transport = ScriptedTransport(["", UNSTARTED], [""])
    client = PbxClient(transport, verify_window=1.0, poll_interval=0.01)
    client.heard(WRONG, Heard(Said.STARTED, "Local/150@nosuchcontext-0000005f;2"))
    with pytest.raises(errors.CallNotCreated):
        await client.originate(WRONG, "150", "+375296254070")


async def test_the_lock_of_an_extension_goes_once_nobody_holds_it() -> None:
    """Originates per (host, extension) are serialized; the lock is dropped once free, so
    extensions called once each leave nothing behind (a bounded map)."""

    class Empty(ScriptedTransport):  # no channel ever: each call ends CallNotCreated
        async def run(
            self, target: HostTarget, commands: Sequence[str], *, notices: list[str] | None = None
        ) -> list[str]:
            return [""] * len(commands)

    client = PbxClient(Empty(), verify_window=0.05, poll_interval=0.01)
    for code in ("150", "151"):
        with pytest.raises(errors.CallNotCreated):
            await client.originate(TARGET, code, "+375296254070")
    assert client._locks == {}


def test_credited_channels_are_forgotten_once_too_old_to_matter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Per (host, extension) the credited uniqueids are kept while a channel of theirs could
    still be a candidate, then forgotten: the map holds the keys of recent calls only."""
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    client = PbxClient(cast(Any, None), verify_window=1.5)
    for host in range(500):
        client._credit((f"10.0.{host // 250}.{host % 250}", 22, "Local/150@inoffice-"), f"u{host}")
    assert len(client._credited) == 500  # all recent: each could still match a listing
    now[0] += client._forget_after + 0.1
    client._credit(("10.9.9.9", 22, "Local/150@inoffice-"), "fresh")
    assert list(client._credited) == [("10.9.9.9", 22, "Local/150@inoffice-")]
