"""Projects: who owns domains and keys and pays for requests. Every domain belongs to one; the CLI's is 'default'."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import class_row

from rag_server.errors import NotFound, RagError

DEFAULT_PROJECT = "default"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class Project:
    id: int
    name: str
    monthly_budget_usd: Decimal | None
    budget_alert: float


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise RagError(
            f"invalid project name {name!r}: use 1-63 lower-case letters, digits, '-' or '_', starting with a "
            "letter or digit"
        )
    return name


def create_project(
    conn: psycopg.Connection[Any], name: str, budget_usd: float | None = None, alert: float = 0.8
) -> Project:
    """A new project; RagError when the name is taken."""
    try:
        with conn.cursor(row_factory=class_row(Project)) as cur:
            row = cur.execute(
                """INSERT INTO projects (name, monthly_budget_usd, budget_alert) VALUES (%s, %s, %s)
                   RETURNING id, name, monthly_budget_usd, budget_alert""",
                (check_name(name), budget_usd, alert),
            ).fetchone()
    except psycopg.errors.UniqueViolation:
        raise RagError(f"project {name!r} exists already") from None
    assert row is not None
    return row


def get_project(conn: psycopg.Connection[Any], name: str) -> Project:
    with conn.cursor(row_factory=class_row(Project)) as cur:
        row = cur.execute(
            "SELECT id, name, monthly_budget_usd, budget_alert FROM projects WHERE name = %s", (name,)
        ).fetchone()
    if row is None:
        raise NotFound(f"no project {name!r} (rag-server projects list shows them)")
    return row


def list_projects(conn: psycopg.Connection[Any]) -> list[Project]:
    with conn.cursor(row_factory=class_row(Project)) as cur:
        return cur.execute(
            "SELECT id, name, monthly_budget_usd, budget_alert FROM projects ORDER BY name"
        ).fetchall()


def set_budget(
    conn: psycopg.Connection[Any], name: str, budget_usd: float | None, alert: float | None = None
) -> Project:
    """Set (or with None, remove) the monthly budget; `alert` is the fraction past which usage warns."""
    project = get_project(conn, name)
    conn.execute(
        "UPDATE projects SET monthly_budget_usd = %s, budget_alert = coalesce(%s, budget_alert) WHERE id = %s",
        (budget_usd, alert, project.id),
    )
    return get_project(conn, name)


def domain_project(conn: psycopg.Connection[Any], domain: str) -> int | None:
    """The id of the project owning a domain, or None when no such domain exists."""
    row = conn.execute("SELECT project_id FROM domains WHERE name = %s", (domain,)).fetchone()
    return row[0] if row else None


def assign_domain(conn: psycopg.Connection[Any], domain: str, project_id: int) -> None:
    """Move an existing domain (for example one ingested by the CLI into 'default') to a project."""
    moved = conn.execute("UPDATE domains SET project_id = %s WHERE name = %s", (project_id, domain)).rowcount
    if not moved:
        raise NotFound(f"no domain {domain!r}")
