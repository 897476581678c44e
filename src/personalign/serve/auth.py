"""API keys: person-scoped keys read and write one person; admin keys manage persons, keys and models.

A key looks like ``pa_<key_id>_<secret>``; the database stores ``key_id`` and SHA-256 of the whole key, never the
key itself. A plain (unsalted, fast) hash is enough here because keys are 256-bit random strings, not passwords:
nobody can brute-force them, so a slow password hash would only add latency to every request.
Admin keys may also be given at start (``--admin-key`` / ``PERSONALIGN_ADMIN_KEY``); they are kept hashed in memory.

Clients send ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. No key or an unknown key -> 401; a
person key used on another person -> 403. The functions here are shared by the service's routes and the
``personalign serve keys`` commands.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from personalign.errors import ConfigError
from personalign.serve import db
from personalign.serve.schemas import PERSON_ID_PATTERN

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


def check_person_id(person_id: str) -> str:
    """``person_id`` if it is a valid person id (the service's path pattern), else a :class:`ConfigError`."""
    if not PERSON_ID_PATTERN.fullmatch(person_id):
        raise ConfigError(f"person id {person_id!r}: expected 1-128 characters of A-Z a-z 0-9 _ . : @ -")
    return person_id


def create_person_key(conn: Connection, person_id: str, label: str = "") -> tuple[str, str]:
    """A new key for one person (created if new), in the caller's transaction; returns (key, key_id)."""
    db.ensure_person(conn, check_person_id(person_id))
    return create_key(conn, "person", person_id, label)


def revoke_key(conn: Connection, key_id: str) -> bool:
    """Delete a key (in the caller's transaction); False when there is no such key."""
    return bool(conn.execute(db.api_keys.delete().where(db.api_keys.c.key_id == key_id)).rowcount)


def list_keys(conn: Connection, person_id: str | None = None) -> list[Any]:
    """Every key's id, role, person, label and creation time (never the key: only its hash is stored); with
    ``person_id`` only that person's keys."""
    k = db.api_keys
    q = select(k.c.key_id, k.c.role, k.c.person_id, k.c.label, k.c.created_at)
    if person_id is not None:
        q = q.where(k.c.person_id == person_id)
    return conn.execute(q.order_by(k.c.created_at, k.c.key_id)).all()


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
