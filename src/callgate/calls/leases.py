"""Leases: which instance does a thing that only one may do at a time, by name.

Several `callgate serve` processes share one PostgreSQL. A PBX host's calls are followed by
exactly one of them, the holder of the lease named after the host's address (the tracker,
`calls.tracker`); another component takes a lease of its own name the same way.

- Acquire: a lease that is free or expired is taken in one statement (`db.leases.acquire`),
  its fencing token raised; while another instance holds it, nothing happens.
- Renew: every `ttl` / 3 the leases held are extended, in one statement whatever their
  number, and checked against their tokens; a lease another instance took is lost at once,
  and so is one not renewed for `ttl` (the database was unreachable): after `ttl` another
  instance may have it.
- Release: a clean stop lets every lease go, free at once for the others.

An instance killed with SIGKILL renews nothing: its leases expire `ttl` after their last
renewal and the next takeover round of another instance takes them (`calls.tracker`).

Why a lease row and a token rather than PostgreSQL's advisory locks: an advisory lock lives
in one database session, so the owner would need a dedicated connection held for as long as
it owns the host, and it fences nothing: a write made through another pooled connection (the
tracker's moves are) by an instance that has just lost its session, or is paused while its
lock was taken over, still lands. The token is checked in the write itself (`call_tracking.
move`), so a stale owner's write is refused whatever connection carries it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import socket
from collections.abc import Callable
from datetime import datetime, timedelta

from callgate import errors
from callgate.db import leases
from callgate.db.executor import Database
from callgate.db.guard import db_step
from callgate.db.models import utcnow
from callgate.logs import get_logger
from callgate.tasks import Background

log = get_logger("callgate.leases")


def instance_id(configured: str | None, port: int) -> str:
    """This process's name in the leases: the configured one, else its machine's name and
    its port. Stable across restarts, so a restarted instance knows its own leases at once
    (it takes its hosts back without waiting for them to expire, and the calls its previous
    run left pending are its own to settle, `calls.reconcile`); unique, since two instances
    on one machine cannot listen on one port."""
    if configured:
        return configured
    name = f"{socket.gethostname()}:{port}"
    return name if len(name) <= 64 else hashlib.sha256(name.encode()).hexdigest()[:32]


class Leases:
    """The leases this instance holds, by name, renewed in the background (`start`)."""

    def __init__(self, database: Database, owner: str, ttl: float) -> None:
        self._database, self.owner, self.ttl = database, owner, ttl
        self.renew_every = ttl / 3
        self._held: dict[str, int] = {}  # name -> token
        self._valid_until: dict[str, float] = {}  # loop time the lease surely lasts until
        self._since: dict[str, datetime] = {}  # when each lease held was taken (wall clock)
        self._taking: set[str] = set()  # acquisitions under way (not this owner's strays)
        # Names another instance held at a try, and the loop time before which
        # `acquire_unless_held` does not ask again (`python -m bench.instances`: with two
        # instances, half the calls are placed on a host the other one follows, and asking at
        # each was a statement a call for the same answer).
        self._held_elsewhere: dict[str, float] = {}
        self._on_lost: list[Callable[[str], None]] = []
        self._renewals = Background(self._renewing, "lease renewals")
        # Held for as long as this instance runs: tells the others it is alive.
        self.instance = leases.INSTANCE + owner
        # No other instance was alive at the last look (`look_for_others`, every renewal):
        # what only several instances need (`CallService`'s shared guard and originate
        # order) is skipped. Until a first look says so, this instance is not alone.
        self.alone = False

    def token(self, name: str) -> int | None:
        """The token of a lease held now; None: not held."""
        return self._held.get(name)

    def since(self, name: str) -> datetime | None:
        """When the lease held was taken; None: not held."""
        return self._since.get(name) if name in self._held else None

    def held(self) -> dict[str, int]:
        """The leases held now and their tokens."""
        return dict(self._held)

    def on_lost(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(name)`` when a lease held is lost (another owner, or not renewed)."""
        self._on_lost.append(callback)

    async def acquire(self, name: str) -> int | None:
        """Take ``name`` if it is free or expired (or held already): its token; None while
        another instance holds it, or when the database is unavailable."""
        held = self._held.get(name)
        if held is not None:
            return held
        began, now = _now(), utcnow()
        self._taking.add(name)
        try:
            async with db_step("taking a lease"):
                token = await leases.acquire(
                    self._database, name, self.owner, now=now, until=now + self._ttl()
                )
        except errors.DatabaseUnavailable as exc:
            log.warning("lease not taken", name=name, detail=exc.message)
            return None
        finally:
            self._taking.discard(name)
        if token is None:
            self._held_elsewhere[name] = _now() + self.renew_every
            return None
        self._held_elsewhere.pop(name, None)
        if name not in self._held:
            log.info("lease taken", name=name, token=token, owner=self.owner)
        self._held[name] = token
        self._since[name] = now
        self._valid_until[name] = began + self.ttl
        return token

    async def acquire_unless_held(self, name: str) -> int | None:
        """`acquire`, except that None comes without asking while another instance held
        ``name`` at a try less than ``renew_every`` ago (it renews its leases as often: it
        most likely still holds it). For a call placed here on a host another instance may
        follow: that instance adopts it (`calls.tracker`); a host whose owner died is taken
        by the takeover, which asks every time (`acquire`)."""
        if _now() < self._held_elsewhere.get(name, -math.inf):
            return None
        return await self.acquire(name)

    def lose(self, name: str, why: str) -> None:
        """Stop counting on ``name`` (a write of ours was fenced, or renewal failed)."""
        if self._held.pop(name, None) is None:
            return
        self._valid_until.pop(name, None)
        log.warning("lease lost", name=name, reason=why, owner=self.owner)
        for callback in self._on_lost:
            callback(name)

    async def renew(self) -> None:
        """Extend every lease held (one statement); lose those another owner took, or all of
        them once none could be renewed for a whole ttl."""
        held = dict(self._held)  # a lease taken while the statement runs is judged next time
        if not held:
            return
        began, now = _now(), utcnow()
        try:
            async with db_step("renewing a lease"):
                kept = await leases.renew_all(self._database, self.owner, now + self._ttl())
        except errors.DatabaseUnavailable as exc:
            for name in held:
                if _now() >= self._valid_until.get(name, 0.0):
                    self.lose(name, f"not renewed for {self.ttl:g} s: {exc.message}")
            return
        for name, token in held.items():
            if self._held.get(name) != token:
                continue  # lost meanwhile
            if kept.get(name) == token:
                self._valid_until[name] = began + self.ttl
            else:
                self.lose(name, "taken by another instance")
        for name, token in kept.items():  # this owner's, unknown to this run: let them go
            if name not in self._held and name not in self._taking:
                with contextlib.suppress(errors.DatabaseUnavailable):
                    async with db_step("releasing a lease"):
                        await leases.release(self._database, name, self.owner, token)

    async def others_alive(self) -> bool:
        """Whether another instance runs now (holds its instance lease); DatabaseUnavailable
        when the database cannot say."""
        async with db_step("looking for other instances"):
            return await leases.others_alive(self._database, self.owner, utcnow())

    async def look_for_others(self) -> bool:
        """Whether another instance runs now, remembered in `alone` (when the database cannot
        say: yes, the safe answer)."""
        try:
            others = await self.others_alive()
        except errors.DatabaseUnavailable:
            others = True
        self.alone = not others
        return others

    def start(self) -> None:
        """Hold the instance lease and renew every lease every ``ttl / 3`` until `aclose`."""
        self._renewals.start()

    async def _renewing(self) -> None:
        while True:
            try:
                await self.renew()
                if self.token(self.instance) is None:
                    await self.acquire(self.instance)
                await self.look_for_others()
            except Exception:  # a bug in one round must not end the renewals
                log.exception("lease renewal failed")
            await asyncio.sleep(self.renew_every)

    async def aclose(self) -> None:
        """Stop renewing and release every lease (a clean stop: the others take over now)."""
        await self._renewals.aclose()
        for name, token in list(self._held.items()):
            try:
                async with db_step("releasing a lease"):
                    await leases.release(self._database, name, self.owner, token)
            except errors.DatabaseUnavailable as exc:  # it expires by itself
                log.warning("lease not released", name=name, detail=exc.message)
        self._held.clear()
        self._valid_until.clear()

    def _ttl(self) -> timedelta:
        return timedelta(seconds=self.ttl)


def _now() -> float:
    return asyncio.get_running_loop().time()
