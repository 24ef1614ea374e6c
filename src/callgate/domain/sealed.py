"""SSH passwords as ``pbx_hosts.ssh_password`` stores them: sealed with ``CALLGATE_SECRET_KEY``.

Fernet (``cryptography``): AES-128-CBC with a random IV, authenticated by HMAC-SHA256, in one
versioned token. Chosen over AES-GCM because nothing is left to get wrong here: no nonce to
keep unique per key, the key is a single printable string an operator can paste into the
environment, and a token made with another key fails its HMAC check instead of decrypting
to garbage. A sealed value starts with `SEALED_PREFIX`; a value without it is a password
stored in clear by an earlier version, read as it is until the next ``callgate host set``.

Pure: no I/O, and no setting is read here; the caller passes the key.
"""

from __future__ import annotations

import functools

from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr

SEALED_PREFIX = "fernet:"
# Long enough for any real password, short enough that its token fits pbx_hosts.ssh_password's
# 1024 characters (a token is about 4/3 of the padded password plus 80 characters).
MAX_PASSWORD_LENGTH = 512
MAKE_A_KEY = (
    "make one with `callgate secret-key` and set it as CALLGATE_SECRET_KEY "
    "(the service and the CLI need the same key)"
)


class KeyMissing(ValueError):
    """A sealed value, and no key to open it with."""


class WrongKey(ValueError):
    """A sealed value that this key did not seal (or that was altered)."""


def new_key() -> str:
    """A fresh key for ``CALLGATE_SECRET_KEY``: 32 random bytes, URL-safe base64."""
    return Fernet.generate_key().decode("ascii")


def is_sealed(stored: str) -> bool:
    return stored.startswith(SEALED_PREFIX)


@functools.lru_cache(maxsize=4)
def _fernet(key: str) -> Fernet:
    # Built once per key: every call of a password host opens its stored password.
    return Fernet(key.encode("ascii"))


def seal(password: str, key: SecretStr) -> str:
    """``password`` as stored: `SEALED_PREFIX` and its Fernet token."""
    token = _fernet(key.get_secret_value()).encrypt(password.encode("utf-8"))
    return SEALED_PREFIX + token.decode("ascii")


def unseal(stored: str, key: SecretStr | None) -> str:
    """The password of a stored value; a value stored in clear is returned as it is.
    `KeyMissing` or `WrongKey` (neither carries the value) when a sealed one cannot be opened."""
    if not is_sealed(stored):
        return stored
    if key is None:
        raise KeyMissing
    try:
        token = stored.removeprefix(SEALED_PREFIX).encode("ascii")
        return _fernet(key.get_secret_value()).decrypt(token).decode("utf-8")
    except (InvalidToken, UnicodeError):
        raise WrongKey from None
