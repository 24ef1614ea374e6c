"""Configuration from the environment (prefix ``CALLGATE_``) and an optional ``.env`` file.

Nothing here is built at import time: ``load_settings()`` is called by the CLI when the service
starts, so a misconfiguration fails there with a message that names the setting.
"""

from __future__ import annotations

import base64
import binascii
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


# The limits (`CALLGATE_LIMIT_<NAME>`) an enterprise may have a value of its own of
# (`callgate enterprise limits`, calls/rate_limits.py).
ENTERPRISE_LIMITS = (
    "enterprise_per_second",
    "enterprise_per_minute",
    "extension_per_minute",
    "destination_per_10_minutes",
    "destination_per_day",
    "live_calls_per_enterprise",
)


class Settings(BaseSettings):
    """Every knob of the service. Field names map to ``CALLGATE_<NAME>`` variables."""

    model_config = SettingsConfigDict(
        env_prefix="CALLGATE_", env_file=".env", extra="ignore", validate_default=True
    )

    database_url: str = "sqlite+aiosqlite:///callgate.db"
    # PostgreSQL connections of the pool at most (the driver's own default, `db.engine`); each
    # instance holds two more (`db.advisory`, `db.notifications`), and all of them count
    # against the server's `max_connections`.
    database_pool_size: int = Field(30, ge=2, le=1000)
    host: str = "127.0.0.1"
    port: int = Field(8018, ge=1, le=65535)

    ssh_port: int = Field(5059, ge=1, le=65535)
    ssh_user: str = "root"
    ssh_password: SecretStr | None = None
    ssh_key_file: Path | None = None
    # Seals the SSH passwords stored in pbx_hosts (domain/sealed.py): `callgate secret-key`.
    secret_key: SecretStr | None = None
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
    # Several instances on one PostgreSQL (calls/leases.py): which instance follows a host's
    # calls is a lease of `lease_ttl` seconds, renewed every third of it; an instance that
    # dies is replaced within `lease_ttl` plus one takeover round. `instance_id`: this
    # process's name in the leases (default: machine name:port; must be unique).
    lease_ttl: float = Field(10.0, ge=1, le=300)
    instance_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    # The double-click guard: the same (enterprise, extension, phone) again within this many
    # seconds returns the call already placed instead of dialling twice; 0 turns it off.
    duplicate_window: float = Field(5.0, ge=0, le=300)
    # The country a number without "+" is read in, for an enterprise whose destination policy
    # names none (domain/destinations.py). BY: the legacy service's enterprises dial Belarusian
    # numbers (+375, national 8 0XX ...), so their national numbers keep their meaning.
    default_region: str = "BY"
    # Rate and concurrency limits (calls/rate_limits.py; README, "Rate and concurrency
    # limits"); 0 turns one off. Numbers are counted per enterprise and number.
    limit_enterprise_per_second: int = Field(10, ge=0)
    limit_enterprise_per_minute: int = Field(300, ge=0)
    limit_extension_per_minute: int = Field(10, ge=0)
    limit_destination_per_10_minutes: int = Field(5, ge=0)
    limit_destination_per_day: int = Field(30, ge=0)
    limit_auth_failures_per_minute: int = Field(20, ge=0)
    limit_live_calls_per_enterprise: int = Field(50, ge=0)
    limit_live_calls_per_host: int = Field(200, ge=0)
    # Seconds between two reads of the enterprises' own limits (`callgate enterprise limits`).
    limit_refresh_interval: float = Field(5.0, gt=0, le=3600)
    # Where the rates are counted: this process's memory, or a Redis shared by instances
    # (`redis://[:password@]host:port/db`), its keys under `redis_prefix`.
    redis_url: SecretStr | None = None
    redis_prefix: str = Field("callgate", min_length=1, max_length=64)

    # Resource bounds (README, "Protection"): request bodies above this many bytes are refused
    # (413) before they are parsed or any authentication runs; the HTTP server's limits.
    max_body_bytes: int = Field(16 * 1024, ge=1024, le=1024 * 1024)
    http_limit_concurrency: int = Field(1000, ge=1)  # connections + tasks; above: 503
    http_keepalive_timeout: int = Field(5, ge=1, le=300)  # an idle keep-alive is closed
    # Event streams (/v1/events) one enterprise may hold open at once.
    streams_per_enterprise: int = Field(5, ge=1, le=1000)
    # Seconds a client of /v1/events or /v1/ws may resume after an event id (older: a reset
    # and a snapshot of the live calls). The events themselves are kept: the calls' history.
    events_retention: float = Field(24 * 3600.0, gt=0)
    # Events a /v1/ws connection may have waiting to be sent; beyond, it is closed (4008) and
    # the client resumes from its last id.
    ws_queue: int = Field(1000, ge=1, le=100_000)
    # Webhooks and RetailCRM (calls/webhooks.py; README, "Webhooks"): targets in private,
    # loopback and link-local ranges are refused unless allowed; how often new events and
    # due deliveries are looked for; one request's timeout; endpoints served at once; the
    # waits after an endpoint's 1st, 2nd, ... failure in a row (past the last: disabled).
    webhook_allow_private: bool = False
    webhook_poll_interval: float = Field(0.5, gt=0, le=60)
    webhook_timeout: float = Field(5.0, gt=0, le=60)
    webhook_concurrency: int = Field(10, ge=1, le=1000)
    webhook_retry_delays: list[float] = Field(
        [5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 28800], min_length=1
    )
    # Shows host addresses, errors and pool details in /api/status (`Authorization: Bearer`).
    admin_token: SecretStr | None = None
    # When set, GET /metrics asks for it as `Authorization: Bearer` (401 without it).
    metrics_token: SecretStr | None = None

    log_file: Path | None = Path("asterisk_service.log")
    log_format: LogFormat = LogFormat.TEXT
    log_level: str = "INFO"
    # `callgate service start|stop|status` (cli_service.py): the started process's id; unset,
    # `callgate.pid` beside the log file.
    pid_file: Path | None = None
    # Seconds from SIGTERM to closing the listening socket, while /ready answers 503 so that a
    # load balancer stops sending new requests first (app.serve); 0: close it at once.
    drain_notice: float = Field(0.0, ge=0, le=300)

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

    @field_validator("secret_key")
    @classmethod
    def _secret_key_is_a_key(cls, value: SecretStr | None) -> SecretStr | None:
        # Fernet's key format, checked here so that a bad key fails at start, not at a call.
        if value is None:
            return None
        try:
            raw = base64.urlsafe_b64decode(value.get_secret_value().encode("ascii"))
        except (binascii.Error, UnicodeError):
            raw = b""
        if len(raw) != 32:
            raise ValueError(
                "must be 32 bytes in URL-safe base64: make one with `callgate secret-key`"
            )
        return value

    @field_validator("default_region")
    @classmethod
    def _region_is_known(cls, value: str) -> str:
        from callgate.domain.destinations import check_region

        return check_region(value)

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
