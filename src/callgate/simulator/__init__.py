"""A fake Asterisk 22.7 that prints what the real one prints, for tests and demos.

The reference is the set of transcripts recorded from a real Asterisk 22.7.0 in
``recordings/asterisk`` (its README explains the dialplan they ran). The pieces:

* ``engine.SimulatedAsterisk``: pure state and CLI, no I/O. ``execute(command)`` returns the
  bytes and exit status of ``asterisk -rx "<command>"``; calls progress with an injectable
  clock (``timeline`` says what each channel shows when), so nothing runs in the background.
* ``daemon.SimulatorDaemon``: the engine on a 127.0.0.1 TCP port, shared by many processes the
  way Asterisk's control socket is; ``daemon.SimulatorControl`` is its async client (commands
  received, reset, "Asterisk is down", scenarios, contexts, live calls).
* ``program.install_program()``: a bash ``asterisk`` that forwards ``-rx`` to the daemon, for a
  real OpenSSH sshd's user (``python -m callgate.simulator daemon`` runs the daemon alone).
* ``sshserver.start_ssh_simulator()``: an in-process asyncssh server in front of an engine,
  reading the shell lines the service sends (``shell.run_line``), many per process if needed.

What is simulated: ``channel originate`` (both usages, every outcome silent as in Asterisk),
``core show channels concise|count``, ``channel request hangup <channel>|all``,
``core show version``, ``core show uptime [seconds]``, ``core set verbose`` (per console);
anything else is answered as Asterisk answers an unknown command. Every originate's pair first
shows ``;1`` Down / ``;2`` Ring ``(None)`` for ``timeline.SETTLE``; a doomed one (unknown
context, or an extension ``set_missing_extensions`` removed) vanishes after
``timeline.DOOMED_LIFETIME`` with core_local.c's NOTICE on every console. Consoles at
``core set verbose 3`` get the verbose lines of every call as they happen (``script``), in both
servers (``pump.ConsolePump``): agent busy, customer busy or congested, no answer within
``Dial(…,N)``, answered, hung up; see ``recordings/asterisk/console-verbose-outcomes.repr.txt``.

Typical uses::

    engine = SimulatedAsterisk()                       # time.monotonic, real uuids
    engine.set_scenario("150", Scenario(agent_answer_after=3))
    engine.execute("channel originate Local/150@inoffice application Dial Local/+1@inoffice")
    engine.execute("core show channels concise").output  # "Local/150@inoffice-00000000;2!..."

    async with SimulatorDaemon() as daemon:            # for processes: bash program, sshd
        install_program(bin_dir, daemon.port)          # bin_dir/asterisk -rx "..."
        await SimulatorControl(daemon.port).set_running(False)

    host = await start_ssh_simulator(engine, username="pbx", password="secret")
    ...                                                # ssh pbx@127.0.0.1 -p host.port
    await host.close()
"""

from __future__ import annotations

from callgate.simulator.daemon import SimulatorControl, SimulatorDaemon
from callgate.simulator.engine import CallInfo, CliAnswer, RecordedCommand, SimulatedAsterisk
from callgate.simulator.program import install_program
from callgate.simulator.sshserver import SshSimulator, start_ssh_simulator
from callgate.simulator.timeline import Scenario

__all__ = [
    "CallInfo",
    "CliAnswer",
    "RecordedCommand",
    "Scenario",
    "SimulatedAsterisk",
    "SimulatorControl",
    "SimulatorDaemon",
    "SshSimulator",
    "install_program",
    "start_ssh_simulator",
]
