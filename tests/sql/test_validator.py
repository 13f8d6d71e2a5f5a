"""Validator rules on correct SQL that an earlier version refused (the hostile side is in test_redteam.py)."""

from __future__ import annotations

import pytest
from psycopg_pool import ConnectionPool

from rag_server.errors import SqlRejected
from rag_server.sql.catalog import Catalog
from rag_server.sql.sandbox import SandboxLimits, execute
from rag_server.sql.validator import validate

LIMITS = SandboxLimits(row_cap=10, statement_timeout_ms=3000, max_cost=1e6)
# One alias in two scopes: `o` is orders inside the CTE and the CTE outside (defog derm_treatment-042's shape).
REUSED_ALIAS = (
    "WITH per AS (SELECT o.customer_id, count(*) AS n FROM orders o GROUP BY o.customer_id) "
    "SELECT o.customer_id, c.name, o.{column} FROM per o JOIN customers c USING (customer_id) "
    "ORDER BY 3 DESC, 1 LIMIT 1"
)


def test_an_alias_reused_in_another_scope_is_accepted(
    module_pool: ConnectionPool, shop_catalog: Catalog
) -> None:
    validated = validate(REUSED_ALIAS.format(column="n"), shop_catalog, LIMITS.row_cap)
    assert execute(module_pool, validated, shop_catalog.schema_name, LIMITS).rows == [[1, "Acme", 2]]


@pytest.mark.parametrize("column", ["xmin", "ctid", "secret"])
def test_a_reused_alias_still_names_only_known_columns(column: str, shop_catalog: Catalog) -> None:
    with pytest.raises(SqlRejected) as rejected:
        validate(REUSED_ALIAS.format(column=column), shop_catalog, LIMITS.row_cap)
    assert rejected.value.rule == "unknown_column"
