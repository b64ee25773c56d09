"""Exceptions raised by agentwatch.

Every error carries an HTTP ``status`` and a snake-case ``code`` so the API
layer can answer with ``{"error": code, "message": str(exc)}`` without a
mapping table of its own::

    AgentwatchError (500 internal_error)
    ├── ConfigError (500 config_error)
    ├── IngestError (400 ingest_error)
    │   └── DecodeError (400 decode_error)
    ├── StoreError (500 store_error)
    │   └── MigrationError (500 migration_error)
    ├── NotFound (404 not_found)
    ├── Forbidden (403 forbidden)
    ├── BadRequest (400 bad_request)
    ├── Conflict (409 conflict)
    ├── Unauthorized (401 unauthorized)
    └── Unavailable (503 unavailable)
"""

from __future__ import annotations


class AgentwatchError(Exception):
    """Base of every error agentwatch raises on purpose."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


class ConfigError(AgentwatchError):
    """The configuration is missing, malformed or contradictory."""

    code = "config_error"


class IngestError(AgentwatchError):
    """Telemetry could not be accepted."""

    status = 400
    code = "ingest_error"


class DecodeError(IngestError):
    """An OTLP request body does not decode."""

    code = "decode_error"


class StoreError(AgentwatchError):
    """The store failed to read or write."""

    code = "store_error"


class MigrationError(StoreError):
    """A schema migration failed or the schema is of an unknown version."""

    code = "migration_error"


class NotFound(AgentwatchError):
    """The requested object does not exist."""

    status = 404
    code = "not_found"


class Forbidden(AgentwatchError):
    """The caller is known but may not do this."""

    status = 403
    code = "forbidden"


class BadRequest(AgentwatchError):
    """The request is malformed."""

    status = 400
    code = "bad_request"


class Conflict(AgentwatchError):
    """The request contradicts what is stored (a dataset that exists, a version that cannot change)."""

    status = 409
    code = "conflict"


class Unauthorized(AgentwatchError):
    """The caller did not authenticate."""

    status = 401
    code = "unauthorized"


class Unavailable(AgentwatchError):
    """The server cannot do this now (a dependency is down); trying later may work."""

    status = 503
    code = "unavailable"
