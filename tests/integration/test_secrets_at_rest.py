"""Secrets at rest through the running service: an encrypted SSH password on a real sshd, and
log lines that request data cannot forge."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from callgate.domain.sealed import new_key, seal
from callgate.logs import configure_logging
from tests.support.sshd import SshdServer
from tests.support.stack import call_stack

pytestmark = [pytest.mark.sshd, pytest.mark.postgres]

# Every line a record starts: `2026-12-06 18:00:00 [info     ] ...`.
RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[")


async def test_a_call_logs_in_with_an_encrypted_password(
    db_url: str, sshd: SshdServer, tmp_path: Path
) -> None:
    """The host row holds only the sealed password; the service opens it with its key and the
    call is placed (one originate) through the real sshd's password login."""
    key = new_key()
    sealed = seal(sshd.password, SecretStr(key))
    assert sshd.password not in sealed
    async with call_stack(
        db_url, sshd, tmp_path, host={"ssh_password": sealed}, secret_key=key
    ) as stack:
        response = await stack.call()
        assert response.status_code == 200, response.text
        assert await stack.originates() == 1


@pytest.mark.parametrize("key", [None, "another"])
async def test_a_password_it_cannot_open_dials_nothing_and_shows_nothing(
    db_url: str, sshd: SshdServer, tmp_path: Path, key: str | None
) -> None:
    """With no key or another key the call fails before any SSH login: a non-2xx answer
    naming neither the value nor the password, and no command at the host."""
    sealed = seal(sshd.password, SecretStr(new_key()))
    settings: dict[str, Any] = {} if key is None else {"secret_key": new_key()}
    async with call_stack(
        db_url, sshd, tmp_path, host={"ssh_password": sealed}, **settings
    ) as stack:
        response = await stack.call()
        assert not 200 <= response.status_code < 300, response.text
        assert sealed[8:40] not in response.text and sshd.password not in response.text
        assert await stack.host_commands() == 0


async def test_request_data_cannot_forge_a_log_line(
    db_url: str, sshd: SshdServer, tmp_path: Path
) -> None:
    """A line break in a URL path or a parameter (``%0A``, ``%0D``, ``%E2%80%A8``) stays
    inside its record's line: every line of the text log starts a record."""
    log_file = tmp_path / "service.log"
    configure_logging(log_file, "text", "INFO", console=False)
    forged = "2026-01-01 00:00:00 [info     ] forged"
    try:
        async with call_stack(db_url, sshd, tmp_path, log_file=log_file) as stack:
            client = stack.service.client
            # Quoted by the renderer (a space), and not (none): both stay on their line.
            for path in ("/x%0A" + forged.replace(" ", "%20"), "/x%0Aforged%0D%E2%80%A8x%1B[2K"):
                assert (await client.get(path)).status_code == 404
            bad = await stack.call(code="150%0D%0A" + forged + "\u2028" + forged)
            assert bad.status_code in {400, 422}, bad.text
            assert await stack.originates() == 0
    finally:
        logging.getLogger().handlers.clear()
    lines = log_file.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""
    assert all(RECORD.match(line) for line in lines[:-1]), lines
    assert sum("forged" in line for line in lines) >= 3  # every request was logged
    assert not any(line.startswith("2026-01-01") for line in lines)
