"""The door-entry service: an HTTP API and web pages over a gallery (``twinshot serve``).
See ``docs/service.md``."""

from twinshot.service.app import create_app, run
from twinshot.service.config import Limits, ServiceConfig
from twinshot.service.errors import ServiceError
from twinshot.service.keys import ROLES, ApiKey, KeyRing, Principal, add_key, read_keys_file, remove_key

__all__ = [
    "ROLES", "ApiKey", "KeyRing", "Limits", "Principal", "ServiceConfig", "ServiceError",
    "add_key", "create_app", "read_keys_file", "remove_key", "run",
]
