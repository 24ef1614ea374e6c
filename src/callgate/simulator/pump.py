"""``ConsolePump``: gives open consoles the lines Asterisk writes to them on its own, on time.

Asterisk writes verbose and log lines to its remote consoles as calls progress, whether or not
a console typed anything (``recordings/asterisk/console-verbose-outcomes.repr.txt``). The
engine only says which lines are due (``SimulatedAsterisk.console_output()``) and when the next
one will be (``next_console_line_at()``); a server (the daemon, the in-process SSH server) runs
one pump, which sleeps until then and hands each console its blocks through ``deliver``.

Around each command the server calls ``before_command()`` (what happened earlier is written
before the answer; it returns the instant to run the command at, so that no line falls between
the two: a doomed pair's NOTICE always precedes the first listing without the pair) and
``after_command()`` (what the command itself caused, such as a hangup's
``Spawn extension`` lines, comes after it, and the timer learns of new calls). The timer is a
task only while something is due: with nothing coming (no console, or no call that a console
would hear of) there is no task at all, which keeps a thousand idle hosts cheap, and the next
command starts it again. An engine clock that is moved by hand (tests) does not advance while
the timer sleeps: it notices, ends, and the next command (which flushes first) takes over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from callgate.simulator.engine import SimulatedAsterisk
from callgate.tasks import cancel_and_wait

Deliver = Callable[[int, list[str]], None]  # (console, its blocks)


class ConsolePump:
    """One engine's console lines, delivered when due; used from one event loop."""

    def __init__(self, engine: SimulatedAsterisk, deliver: Deliver) -> None:
        self._engine = engine
        self._deliver = deliver
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._deadline: float | None = None  # engine time the timer sleeps until, if any
        # Test switch: blocks wait for the console's next line-by-line answer (``take_held``).
        self._hold = False
        self._held: dict[int, list[str]] = {}

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def before_command(self) -> float:
        """Deliver what is due; the engine time the command is to run at."""
        now = self._engine.clock()
        self.flush(now)
        return now

    def after_command(self) -> None:
        """Deliver what the command caused; make sure the timer knows what is due next."""
        self.flush()
        self.arm()

    def arm(self) -> None:
        """Start the timer if something is due, or wake it if that is sooner than it thinks."""
        due = self._engine.next_console_line_at()
        if due is None:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        elif self._deadline is None or due < self._deadline:
            self._wake.set()

    def flush(self, until: float | None = None) -> None:
        """Deliver every line due by ``until`` (engine time; default: now)."""
        for console, blocks in self._engine.console_output(until).items():
            if self._hold:
                self._held.setdefault(console, []).extend(blocks)
            else:
                self._deliver(console, blocks)

    def hold(self, on: bool) -> None:
        """While on, blocks wait for the console's next line-by-line answer, to be written
        after its first line (as when Asterisk's logger writes between a listing's lines)."""
        self._hold = on
        if not on:
            held, self._held = self._held, {}
            for console, blocks in held.items():
                self._deliver(console, blocks)

    def take_held(self, console: int) -> list[str]:
        """The blocks held for ``console`` (none unless ``hold(True)``); they are its now."""
        return self._held.pop(console, [])

    def forget(self, console: int) -> None:
        """A console closed: drop what was held for it."""
        self._held.pop(console, None)

    async def _run(self) -> None:
        """Sleep until the next line is due, deliver, again; end when nothing is coming."""
        while (due := self._engine.next_console_line_at()) is not None:
            now = self._engine.clock()
            self._deadline = due
            slept = await self._sleep(max(0.0, due - now))
            if slept and due > now and self._engine.clock() == now:
                break  # the clock stood still while we slept: it is moved by hand
            self.flush()
        self._deadline = None

    async def _sleep(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless woken first; True if the time ran out."""
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            return True
        finally:
            self._wake.clear()
        return False
