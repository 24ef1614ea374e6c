"""``python -m callgate.simulator``: run the simulator daemon, or install its program.

    python -m callgate.simulator daemon --port 0 --port-file /tmp/sim.port
    python -m callgate.simulator install-program --bin-dir /tmp/bin --port 40123

The daemon listens on 127.0.0.1 only and runs until SIGTERM or SIGINT. The port file is
written once the port is bound (atomically: a reader never sees a partial number), so a test
can start the daemon with port 0 and wait for the file.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from callgate.simulator.daemon import SimulatorDaemon
from callgate.simulator.engine import SimulatedAsterisk
from callgate.simulator.program import install_program


async def run_daemon(port: int, port_file: Path | None, running: bool) -> None:
    """Serve until SIGTERM/SIGINT; the port goes to ``port_file`` and to stdout."""
    engine = SimulatedAsterisk()
    engine.running = running
    daemon = SimulatorDaemon(engine, port=port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    bound = await daemon.start()
    try:
        if port_file is not None:
            partial = port_file.with_name(port_file.name + ".partial")
            partial.write_text(f"{bound}\n", encoding="ascii")
            partial.replace(port_file)
        print(f"callgate simulator daemon listening on 127.0.0.1:{bound}", flush=True)
        await stop.wait()
    finally:
        await daemon.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m callgate.simulator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    daemon = commands.add_parser("daemon", help="serve a simulated Asterisk on 127.0.0.1")
    daemon.add_argument("--port", type=int, default=0, help="TCP port (0: any free port)")
    daemon.add_argument("--port-file", type=Path, help="write the bound port to this file")
    daemon.add_argument(
        "--not-running", action="store_true", help="start as an Asterisk that is down"
    )
    program = commands.add_parser("install-program", help="write the bash `asterisk` program")
    program.add_argument("--bin-dir", type=Path, required=True)
    program.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    if args.command == "daemon":
        asyncio.run(run_daemon(args.port, args.port_file, running=not args.not_running))
    else:
        print(install_program(args.bin_dir, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
