"""API keys: which project a request belongs to.

With no key in the store, everything belongs to the default project (the
server refuses to listen beyond loopback that way unless told ``--insecure``).
Once any key exists, every request but ``/healthz`` and ``/readyz`` needs
one, sent as ``Authorization: Bearer <key>`` or ``x-api-key: <key>``. Keys are
stored as SHA-256 hashes; the plaintext is shown once, at creation.
"""

from __future__ import annotations

import threading
import time
from typing import Mapping

from agentwatch.errors import Unauthorized
from agentwatch.store.store import Store, hash_key

#: How long a key created or revoked from another process may go unseen.
REFRESH_SECONDS = 2.0


class Auth:
    def __init__(self, store: Store, default_project_id: int) -> None:
        self.store = store
        self.default_project_id = default_project_id
        self._keys: dict[str, int] = {}
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def _active(self) -> dict[str, int]:
        now = time.monotonic()
        if now - self._loaded_at > REFRESH_SECONDS:
            with self._lock:
                if now - self._loaded_at > REFRESH_SECONDS:
                    self._keys = self.store.active_keys()
                    self._loaded_at = now
        return self._keys

    def refresh(self) -> None:
        self._loaded_at = float("-inf")

    @property
    def keys_required(self) -> bool:
        return bool(self._active())

    def project_for(self, headers: Mapping[str, str]) -> int:
        """The project of the request's key; raises :class:`Unauthorized`."""
        token = token_from_headers(headers)
        keys = self._active()
        if token is None:
            if keys:
                raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>' or 'x-api-key'")
            return self.default_project_id
        project_id = keys.get(hash_key(token))
        if project_id is None:
            raise Unauthorized("the API key is not valid or was revoked")
        return project_id


def token_from_headers(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization")
    if value:
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    value = headers.get("x-api-key")
    if value and value.strip():
        return value.strip()
    return None
