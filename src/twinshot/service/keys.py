"""API keys: a *read* role (identify, verify, search) and an *admin* role (enroll, delete,
list, and everything a read key may do).

A key is a random secret (``tsk_`` + 43 URL-safe characters, 256 bits) shown once when it
is made. At rest only its SHA-256 digest is kept, in a keys file (JSON, mode 0600)::

    {"format": "twinshot-keys/1",
     "keys": [{"name": "door-1", "role": "read", "sha256": "9f86...", "created": "..."}]}

A fast hash is the right one here: the secrets are random, not chosen passwords, so there
is nothing to guess and no need for a slow hash (which would cost every request tens of
milliseconds). A presented key is hashed and compared with **every** stored digest with
:func:`hmac.compare_digest`, without stopping at the first match, so the time taken says
nothing about which key, if any, was close.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

from twinshot.errors import ConfigError, TwinshotError

#: The roles, weakest first; a role may do everything the roles before it may.
ROLES = ("read", "admin")
KEY_PREFIX = "tsk_"
KEYS_FORMAT = "twinshot-keys/1"
_NAME = re.compile(r"^[A-Za-z0-9_.@:#-]{1,64}$")


@dataclass(frozen=True)
class ApiKey:
    """One stored key: its name (who, in the audit log), role and SHA-256 digest (hex)."""

    name: str
    role: str
    sha256: str
    created: str = ""

    def __post_init__(self) -> None:
        check_name(self.name)
        check_role(self.role)
        if not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ConfigError(f"key {self.name!r}: sha256 must be 64 lowercase hex digits")

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "role": self.role, "sha256": self.sha256, "created": self.created}


@dataclass(frozen=True)
class Principal:
    """Who made a request: the key's name and role."""

    name: str
    role: str

    def may(self, role: str) -> bool:
        """Whether this principal holds ``role`` (admin holds read too)."""
        return ROLES.index(self.role) >= ROLES.index(role)


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"key name {name!r} must be 1-64 characters of letters, digits and _ . @ : # -")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ConfigError(f"unknown key role {role!r}; valid: {', '.join(ROLES)}")
    return role


def new_secret() -> str:
    """A fresh random key (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """The SHA-256 digest (hex) kept for ``secret``."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class KeyRing:
    """The keys a service accepts.

    Args:
        keys: the stored keys; names must be unique.
    """

    def __init__(self, keys: Iterable[ApiKey] = ()) -> None:
        self.keys: tuple[ApiKey, ...] = tuple(keys)
        names = [k.name for k in self.keys]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ConfigError(f"key name(s) given twice: {', '.join(dup)}")
        self._digests = [(bytes.fromhex(k.sha256), k) for k in self.keys]

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> KeyRing:
        return cls(read_keys_file(path))

    @classmethod
    def from_secrets(cls, read: Sequence[str] = (), admin: Sequence[str] = (), *, prefix: str = "env") -> KeyRing:
        """Keys given in plain text (from the environment, say); named ``<prefix>:read``,
        ``<prefix>:admin`` (``#2``, ``#3``... when several)."""
        keys = []
        for role, secrets_ in (("read", read), ("admin", admin)):
            for i, s in enumerate(s for s in secrets_ if s):
                if len(s) < 16:
                    raise ConfigError(f"the {role} key given in the environment is shorter than 16 characters")
                name = f"{prefix}:{role}" + (f"#{i + 1}" if i else "")
                keys.append(ApiKey(name, role, digest(s)))
        return cls(keys)

    def __add__(self, other: KeyRing) -> KeyRing:
        return KeyRing(self.keys + other.keys)

    def authenticate(self, secret: str | None) -> Principal | None:
        """The principal holding ``secret``, or None. Compares with every key in
        constant time per key (see the module's docstring)."""
        if not secret:
            return None
        presented = hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()
        found: ApiKey | None = None
        for stored, key in self._digests:
            if hmac.compare_digest(presented, stored) and found is None:
                found = key
        return Principal(found.name, found.role) if found is not None else None


# -- the keys file ------------------------------------------------------------------------


def read_keys_file(path: str | os.PathLike) -> list[ApiKey]:
    """The keys of a keys file (see the module's docstring)."""
    path = Path(path)
    if not path.is_file():
        raise TwinshotError(f"{path}: no such keys file; make one with `twinshot keys add {path} NAME --role admin`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable keys file ({exc.__class__.__name__})") from None
    if not isinstance(data, dict) or data.get("format") != KEYS_FORMAT or not isinstance(data.get("keys"), list):
        raise ConfigError(f"{path}: not a twinshot keys file (expected format {KEYS_FORMAT!r})")
    out = []
    for i, entry in enumerate(data["keys"]):
        try:
            out.append(ApiKey(str(entry["name"]), str(entry["role"]), str(entry["sha256"]), str(entry.get("created", ""))))
        except (KeyError, TypeError):
            raise ConfigError(f"{path}: key #{i + 1} needs name, role and sha256") from None
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    return out


def write_keys_file(path: str | os.PathLike, keys: Sequence[ApiKey]) -> None:
    """Write a keys file atomically (temporary name, then rename), readable by its owner only."""
    path = Path(path)
    KeyRing(keys)  # validates unique names
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"format": KEYS_FORMAT, "keys": [k.to_dict() for k in keys]}, indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add_key(path: str | os.PathLike, name: str, role: str) -> str:
    """Make a new key ``name`` with ``role`` in the keys file at ``path`` (created if
    missing) and return its secret: the only time it is ever shown."""
    check_name(name)
    check_role(role)
    path = Path(path)
    keys = read_keys_file(path) if path.exists() else []
    if any(k.name == name for k in keys):
        raise TwinshotError(f"{path}: a key named {name!r} exists; remove it first or choose another name")
    secret = new_secret()
    created = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    write_keys_file(path, [*keys, ApiKey(name, role, digest(secret), created)])
    return secret


def remove_key(path: str | os.PathLike, name: str) -> None:
    """Remove the key ``name`` from the keys file (a running service notices on restart)."""
    keys = read_keys_file(path)
    if not any(k.name == name for k in keys):
        raise TwinshotError(f"{path}: no key named {name!r}")
    write_keys_file(path, [k for k in keys if k.name != name])
