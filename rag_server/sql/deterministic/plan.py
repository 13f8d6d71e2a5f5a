"""What a question asks, resolved against the catalog before it is written as SQL, and the joins it takes."""

from __future__ import annotations

from dataclasses import dataclass, field

from rag_server.sql.catalog import Catalog, CatalogTable


@dataclass
class _Plan:
    """What the question asks, resolved against the catalog, before it is written as SQL."""

    table: CatalogTable
    aggregate: str | None = None
    measure: tuple[str, str] | None = None  # (table, column)
    groups: list[str] = field(default_factory=list)  # columns, or a date_trunc over one
    filters: list[str] = field(default_factory=list)
    joins: dict[str, str] = field(default_factory=dict)  # joined table -> ON condition
    order_desc: bool = True
    top: int | None = None
    entity: CatalogTable | None = None


def _join(catalog: Catalog, plan: _Plan, other: CatalogTable) -> bool:
    """Join `other` to the main table through a declared join; False when there is none."""
    if other.name == plan.table.name or other.name in plan.joins:
        return True
    joins = catalog.joins_between(plan.table.name, other.name)
    if not joins:
        return False
    join = joins[0]
    plan.joins[other.name] = f"{join.left_table}.{join.left_column} = {join.right_table}.{join.right_column}"
    return True


def _joinable(catalog: Catalog, plan: _Plan) -> list[CatalogTable]:
    return [plan.table] + [
        t
        for t in catalog.tables.values()
        if t.name != plan.table.name and catalog.joins_between(plan.table.name, t.name)
    ]
