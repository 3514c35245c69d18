"""API keys: the keys file keeps only digests, and a key is recognised by its role."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest

from twinshot.errors import ConfigError, TwinshotError
from twinshot.service.keys import KeyRing, Principal, add_key, digest, read_keys_file, remove_key


def test_keys_file_keeps_only_digests(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    admin = add_key(path, "boss", "admin")
    read = add_key(path, "door-1", "read")
    text = path.read_text()
    assert admin not in text and read not in text
    assert hashlib.sha256(admin.encode()).hexdigest() in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert admin.startswith("tsk_") and len(admin) >= 40 and admin != read
    data = json.loads(text)
    assert data["format"] == "twinshot-keys/1" and [k["name"] for k in data["keys"]] == ["boss", "door-1"]
    assert list(path.parent.iterdir()) == [path]  # no temporary file left


def test_keyring_recognises_each_key_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    admin, read = add_key(path, "boss", "admin"), add_key(path, "door-1", "read")
    ring = KeyRing.from_file(path)
    assert ring.authenticate(admin) == Principal("boss", "admin")
    assert ring.authenticate(read) == Principal("door-1", "read")
    for wrong in (None, "", read[:-1], read + "x", admin.upper(), digest(read), "tsk_\udcff"):
        assert ring.authenticate(wrong) is None
    assert Principal("boss", "admin").may("read") and Principal("boss", "admin").may("admin")
    assert Principal("d", "read").may("read") and not Principal("d", "read").may("admin")


def test_keys_from_the_environment() -> None:
    ring = KeyRing.from_secrets(read=["r" * 20, "s" * 20], admin=["a" * 24])
    assert ring.authenticate("s" * 20) == Principal("env:read#2", "read")
    assert ring.authenticate("a" * 24) == Principal("env:admin", "admin")
    with pytest.raises(ConfigError, match="shorter than 16"):
        KeyRing.from_secrets(admin=["short"])


def test_keys_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    with pytest.raises(TwinshotError, match="no such keys file"):
        read_keys_file(path)
    add_key(path, "boss", "admin")
    with pytest.raises(TwinshotError, match="exists"):
        add_key(path, "boss", "read")
    with pytest.raises(ConfigError, match="unknown key role 'owner'; valid: read, admin"):
        add_key(path, "x", "owner")
    with pytest.raises(ConfigError, match="key name"):
        add_key(path, "has space", "read")
    remove_key(path, "boss")
    assert read_keys_file(path) == []
    with pytest.raises(TwinshotError, match="no key named"):
        remove_key(path, "boss")
    (tmp_path / "bad.json").write_text('{"format": "something-else", "keys": []}')
    with pytest.raises(ConfigError, match="not a twinshot keys file"):
        read_keys_file(tmp_path / "bad.json")
    (tmp_path / "bad.json").write_text("not json")
    with pytest.raises(ConfigError, match="not a readable keys file"):
        read_keys_file(tmp_path / "bad.json")
