"""The `-rx` transport: each CLI command is one `asterisk -rx '…'` process on the host.

Several commands asked for together run in one SSH exec (chained with `&&`), so a verified
originate costs one round trip, not two.
"""

from __future__ import annotations

from collections.abc import Sequence

from callgate import errors
from callgate.pbx import commands
from callgate.pbx.parsing import NOT_RUNNING_MARK, checked_answers
from callgate.pbx.registry import Shared
from callgate.pbx.ssh import SshPool
from callgate.pbx.transport import HostTarget

_COMMAND_NOT_FOUND = 127


class RxTransport:
    """Runs CLI commands through `asterisk -rx` over the pooled SSH connections."""

    def __init__(self, pool: SshPool) -> None:
        self._pool = pool

    async def run(
        self, target: HostTarget, cli_commands: Sequence[str], *, notices: list[str] | None = None
    ) -> list[str]:
        """See PbxTransport.run; ``asterisk -rx`` prints no log lines, so ``notices`` stays as it
        is."""
        line = commands.rx_shell(target.asterisk_bin, cli_commands)
        # A connection lost as the line started is run again only when every command only reads:
        # an originate or a hangup that may have run is never sent twice.
        idempotent = all(command in commands.READ_ONLY for command in cli_commands)
        result = await self._pool.run(target, line, idempotent=idempotent)
        outputs = commands.split_outputs(result.stdout)
        if result.exit_status == _COMMAND_NOT_FOUND and len(outputs) == 1 and not outputs[0]:
            raise errors.AsteriskNotFound(
                f"the program '{target.asterisk_bin}' was not found on {target.label}",
                host=target.label,
            )
        if result.exit_status != 0 and not outputs[-1].startswith(NOT_RUNNING_MARK):
            raise errors.UnexpectedOutput(
                f"asterisk on {target.label} exited with status {result.exit_status}",
                host=target.label,
            )
        checked_answers(outputs, target.label)
        if len(outputs) != len(cli_commands):
            raise errors.UnexpectedOutput(
                f"expected {len(cli_commands)} answers from {target.label}, got {len(outputs)}",
                host=target.label,
                completed=len(outputs),
            )
        return outputs

    def status(self) -> dict[str, object]:
        return {"transport": "rx", **self._pool.status()}

    async def aclose(self) -> None:
        await self._pool.aclose()


def build(shared: Shared) -> RxTransport:
    """The rx transport of a service (its registration: ``callgate.wiring``)."""
    return RxTransport(shared.pool)
