"""API keys: each belongs to a project, carries a role and the domains it may use, and is stored hashed.

A key is `rk_` and 43 characters of randomness (32 bytes): shown once at creation, then only its SHA-256 and a
short prefix (to tell keys apart in listings) are kept. With that much entropy a fast hash is as safe as a
slow one, and it keeps authentication to one indexed lookup per request.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg.rows import class_row

from rag_server.errors import Forbidden, NotFound, RagError, Unauthenticated
from rag_server.projects import DEFAULT_PROJECT, get_project

Role = Literal["reader", "owner"]
ROLES: tuple[Role, ...] = ("reader", "owner")
KEY_PREFIX = "rk_"
_SHOWN_PREFIX = 10


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's project, role, granted domains (None = all of the project's) and limits.

    `key_id` is None when auth is disabled (RAG_AUTH_DISABLED): the caller then owns project 'default' and
    may use every domain."""

    project_id: int
    project: str
    role: Role
    key_id: int | None = None
    domains: tuple[str, ...] | None = None
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None

    @property
    def unrestricted(self) -> bool:
        return self.key_id is None

    def require_owner(self, action: str) -> None:
        if self.role != "owner":
            raise Forbidden(f"{action} needs an owner key; this key is a {self.role}")

    def check_domain(self, domain: str, owner_project: int | None) -> None:
        """Forbidden unless the key may use `domain` (owned by project `owner_project`, None = no such domain)."""
        if self.unrestricted:
            return
        if self.domains is not None and domain not in self.domains:
            raise Forbidden(f"domain {domain!r} is not granted to this key")
        if owner_project is not None and owner_project != self.project_id:
            raise Forbidden(f"domain {domain!r} is not granted to this key")


@dataclass(frozen=True)
class KeyInfo:
    """A key as listings show it: never the key itself."""

    id: int
    project: str
    name: str
    prefix: str
    role: str
    domains: list[str] | None
    requests_per_minute: int | None
    tokens_per_minute: int | None
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class CreatedKey:
    """A new key: `key` is shown this once and is not stored."""

    key: str
    info: KeyInfo


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def create_key(
    conn: psycopg.Connection[Any],
    project: str,
    name: str,
    role: Role = "reader",
    domains: list[str] | None = None,
    requests_per_minute: int | None = None,
    tokens_per_minute: int | None = None,
) -> CreatedKey:
    """A new key for `project`; the only time the key itself is returned."""
    if role not in ROLES:
        raise RagError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    owner = get_project(conn, project)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = conn.execute(
        """INSERT INTO api_keys (project_id, name, prefix, hash, role, domains, requests_per_minute,
                                 tokens_per_minute)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
        (
            owner.id,
            name,
            key[:_SHOWN_PREFIX],
            hash_key(key),
            role,
            sorted(set(domains)) if domains else None,
            requests_per_minute or None,
            tokens_per_minute or None,
        ),
    ).fetchone()
    assert row is not None
    return CreatedKey(key, get_key(conn, row[0]))


_INFO = """SELECT k.id, p.name AS project, k.name, k.prefix, k.role, k.domains, k.requests_per_minute,
                  k.tokens_per_minute, k.created_at, k.revoked_at
           FROM api_keys k JOIN projects p ON p.id = k.project_id"""


def get_key(conn: psycopg.Connection[Any], key_id: int) -> KeyInfo:
    with conn.cursor(row_factory=class_row(KeyInfo)) as cur:
        row = cur.execute(_INFO + " WHERE k.id = %s", (key_id,)).fetchone()
    if row is None:
        raise NotFound(f"no key {key_id}")
    return row


def list_keys(conn: psycopg.Connection[Any], project: str | None = None) -> list[KeyInfo]:
    """Keys, revoked ones too, of one project or of all."""
    with conn.cursor(row_factory=class_row(KeyInfo)) as cur:
        if project is None:
            return cur.execute(_INFO + " ORDER BY p.name, k.id").fetchall()
        return cur.execute(_INFO + " WHERE p.name = %s ORDER BY k.id", (project,)).fetchall()


def revoke_key(conn: psycopg.Connection[Any], key_id: int, project: str | None = None) -> KeyInfo:
    """Revoke a key (of `project` when given): it fails authentication from the next request on."""
    info = get_key(conn, key_id)
    if project is not None and info.project != project:
        raise NotFound(f"no key {key_id} in project {project!r}")
    conn.execute("UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s", (key_id,))
    return get_key(conn, key_id)


def authenticate(conn: psycopg.Connection[Any], key: str | None) -> Principal:
    """The principal of a presented key; Unauthenticated for none, an unknown or a revoked one."""
    if not key:
        raise Unauthenticated(
            "an API key is needed: send 'Authorization: Bearer KEY' (rag-server keys create)"
        )
    row = conn.execute(
        """SELECT k.project_id, p.name, k.role, k.id, k.domains, k.requests_per_minute, k.tokens_per_minute,
                  k.revoked_at IS NOT NULL
           FROM api_keys k JOIN projects p ON p.id = k.project_id WHERE k.hash = %s""",
        (hash_key(key),),
    ).fetchone()
    if row is None:
        raise Unauthenticated("unknown API key")
    if row[7]:
        raise Unauthenticated("this API key was revoked")
    domains = tuple(row[4]) if row[4] is not None else None
    return Principal(row[0], row[1], row[2], row[3], domains, row[5], row[6])


def local_principal(conn: psycopg.Connection[Any]) -> Principal:
    """The caller when auth is disabled: an owner of project 'default' with every domain and no limits."""
    project = get_project(conn, DEFAULT_PROJECT)
    return Principal(project.id, project.name, "owner")
