"""Configuration from the environment (prefix ``CALLGATE_``) and an optional ``.env`` file.

Nothing here is built at import time: ``load_settings()`` is called by the CLI when the service
starts, so a misconfiguration fails there with a message that names the setting.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from callgate.errors import ConfigurationError


class HostKeyPolicy(StrEnum):
    """How an SSH server's host key is checked."""

    STRICT = "strict"  # the key must be in known_hosts (or pinned for the host)
    ACCEPT_NEW = "accept-new"  # pin on first contact, refuse a changed key afterwards
    OFF = "off"  # no check at all; warned about at start and in /api/status


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class Transport(StrEnum):
    """The built-in ways CLI commands reach Asterisk on a host; others may be registered
    (``pbx/registry.py``): a host's transport is any registered name (``transport_name``)."""

    RX = "rx"  # one `asterisk -rx "..."` process per command
    CONSOLE = "console"  # a persistent `asterisk -r` console per host


# At most 16 characters: the width of pbx_hosts.transport.
_TRANSPORT_NAME = re.compile(r"[a-z][a-z0-9_-]{0,15}", re.ASCII)


def transport_name(value: str) -> str:
    """A transport's name as settings and ``pbx_hosts.transport`` hold it (ValueError if it
    cannot be one); whether such a transport is registered is checked where they are built
    (``callgate.wiring``) and per host (``pbx/routing.py``)."""
    if not _TRANSPORT_NAME.fullmatch(value):
        raise ValueError("must be a transport's name: 1 to 16 of a-z 0-9 _ -, starting a-z")
    return value


class Settings(BaseSettings):
    """Every knob of the service. Field names map to ``CALLGATE_<NAME>`` variables."""

    model_config = SettingsConfigDict(
        env_prefix="CALLGATE_", env_file=".env", extra="ignore", validate_default=True
    )

    database_url: str = "sqlite+aiosqlite:///callgate.db"
    host: str = "127.0.0.1"
    port: int = Field(8018, ge=1, le=65535)

    ssh_port: int = Field(5059, ge=1, le=65535)
    ssh_user: str = "root"
    ssh_password: SecretStr | None = None
    ssh_key_file: Path | None = None
    ssh_host_key_policy: HostKeyPolicy = HostKeyPolicy.ACCEPT_NEW
    ssh_known_hosts: Path | None = None
    ssh_connect_timeout: float = Field(10.0, gt=0, le=300)
    ssh_command_timeout: float = Field(15.0, gt=0, le=600)
    # Parallel commands per SSH connection: below OpenSSH's default MaxSessions (10).
    ssh_sessions_per_connection: int = Field(8, ge=1, le=64)
    ssh_connections_per_host: int = Field(4, ge=1, le=64)
    # How long a call may wait for a free session once every connection of a host is busy.
    ssh_pool_wait: float = Field(5.0, gt=0, le=300)
    ssh_max_handshakes: int = Field(32, ge=1, le=1024)
    ssh_keepalive_interval: float = Field(15.0, gt=0)
    ssh_idle_timeout: float = Field(300.0, gt=0)
    # Circuit breaker (pbx/breaker.py): after this many connection failures in a row a host is
    # not tried for `breaker_cooldown` seconds (calls fail at once), then one call probes it.
    # 0 turns the breaker off.
    breaker_failures: int = Field(3, ge=0, le=1000)
    breaker_cooldown: float = Field(30.0, gt=0, le=3600)

    dial_context: str = "inoffice"
    asterisk_bin: str = "asterisk"
    # A registered transport's name (pbx/registry.py); per host: `callgate host set --transport`.
    transport: str = Transport.CONSOLE.value

    code_max_length: int = Field(6, ge=2, le=32)
    verify_window: float = Field(1.5, gt=0, le=30)
    verify_poll_interval: float = Field(0.05, gt=0, le=5)
    # Call tracking: at most one `core show channels concise` per host per interval; a host
    # unreachable for longer than `track_lost_after` has its live calls marked `lost`.
    track_interval: float = Field(1.0, gt=0, le=60)
    track_lost_after: float = Field(60.0, gt=0)
    # A listening console at verbose 3 per host with live calls (console hosts only): each
    # transition as Asterisk prints it, and why a leg ended (busy, no answer, congestion).
    track_listen: bool = True
    # The double-click guard: the same (enterprise, extension, phone) again within this many
    # seconds returns the call already placed instead of dialling twice; 0 turns it off.
    duplicate_window: float = Field(5.0, ge=0, le=300)

    log_file: Path | None = Path("asterisk_service.log")
    log_format: LogFormat = LogFormat.TEXT
    log_level: str = "INFO"

    # `make run`: start the in-process simulated PBX and bind a demo enterprise to it.
    demo: bool = False

    @field_validator("dial_context")
    @classmethod
    def _context_is_safe(cls, value: str) -> str:
        from callgate.validation import validate_context

        return validate_context(value)

    @field_validator("asterisk_bin")
    @classmethod
    def _asterisk_bin_is_safe(cls, value: str) -> str:
        from callgate.validation import validate_program_path

        return validate_program_path(value)

    @field_validator("transport")
    @classmethod
    def _transport_is_a_name(cls, value: str) -> str:
        return transport_name(value)

    @field_validator("log_level")
    @classmethod
    def _level_is_known(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return upper


def load_settings(**overrides: object) -> Settings:
    """Read the settings; a bad value raises ConfigurationError naming ``CALLGATE_<FIELD>``."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(part) for part in err["loc"])
            problems.append(f"CALLGATE_{field.upper()}: {err['msg']}")
        raise ConfigurationError("invalid configuration: " + "; ".join(problems)) from None
