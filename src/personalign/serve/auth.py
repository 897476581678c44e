"""API keys: person-scoped keys read and write one person; admin keys manage persons, keys and models.

A key looks like ``pa_<key_id>_<secret>``; the database stores ``key_id`` and SHA-256 of the whole key, never the
key itself. A plain (unsalted, fast) hash is enough here because keys are 256-bit random strings, not passwords:
nobody can brute-force them, so a slow password hash would only add latency to every request.
Admin keys may also be given at start (``--admin-key`` / ``PERSONALIGN_ADMIN_KEY``); they are kept hashed in memory.

Clients send ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. No key or an unknown key -> 401; a
person key used on another person -> 403.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import Connection, select

from personalign.serve import db

KEY_PREFIX = "pa"


@dataclass(frozen=True)
class Principal:
    role: str  # "admin" | "person"
    person_id: str | None = None
    key_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def can_access(self, person_id: str) -> bool:
        return self.is_admin or (self.role == "person" and self.person_id == person_id)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh key and its id."""
    key_id = secrets.token_hex(6)
    return f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}", key_id


def parse_key_id(key: str) -> str | None:
    parts = key.split("_", 2)
    if len(parts) == 3 and parts[0] == KEY_PREFIX and len(parts[1]) == 12:
        return parts[1]
    return None


def create_key(conn: Connection, role: str, person_id: str | None = None, label: str = "") -> tuple[str, str]:
    """Store a new key's hash (in the caller's transaction); returns (key, key_id). The key is not recoverable."""
    if role not in ("admin", "person"):
        raise ValueError(f"role must be 'admin' or 'person', got {role!r}")
    if role == "person" and not person_id:
        raise ValueError("a person key needs a person id")
    key, key_id = new_key()
    conn.execute(
        db.api_keys.insert().values(
            key_id=key_id,
            key_hash=hash_key(key),
            role=role,
            person_id=person_id if role == "person" else None,
            label=label,
            created_at=db.now(),
        )
    )
    return key, key_id


def extract_key(headers) -> str | None:  # noqa: ANN001 - starlette Headers or a dict
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = headers.get("x-api-key")
    return key.strip() if key else None


def authenticate(conn: Connection, key: str, admin_hashes: frozenset[str]) -> Principal | None:
    """The principal a key belongs to, or None."""
    h = hash_key(key)
    for ah in admin_hashes:
        if hmac.compare_digest(h, ah):
            return Principal("admin")
    key_id = parse_key_id(key)
    if key_id is None:
        return None
    row = conn.execute(
        select(db.api_keys.c.key_hash, db.api_keys.c.role, db.api_keys.c.person_id).where(
            db.api_keys.c.key_id == key_id
        )
    ).first()
    if row is None or not hmac.compare_digest(h, row.key_hash):
        return None
    return Principal(row.role, row.person_id, key_id)
