"""A domain `shop` with imported tables, shared by the sql tests of a module."""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg_pool import ConnectionPool

from ingest.tables import import_table
from rag_server.config import PACKAGED_EMBEDDING_MODEL
from rag_server.domains import Domain, HnswOptions, ensure_domain
from rag_server.sql.catalog import Catalog, add_join, load_catalog

CUSTOMERS = """customer_id,name,plan,region,signup_date
1,Acme,team,eu,2024-01-10
2,Globex,business,us,2024-02-11
3,Initech,team,us,2024-03-12
4,Umbrella,enterprise,eu,2024-04-13
"""
ORDERS = """order_id,customer_id,amount,status,order_date
10,1,100.50,paid,2024-03-01
11,1,80.00,refunded,2024-03-15
12,2,290.00,paid,2024-04-02
13,3,45.25,paid,2024-05-20
14,4,4500.00,paid,2024-06-30
15,2,290.00,failed,2024-07-01
"""


def make_shop(pool: ConnectionPool, folder: Path) -> Domain:
    with pool.connection() as conn:
        domain = ensure_domain(conn, "shop", PACKAGED_EMBEDDING_MODEL, 384, HnswOptions())
    for name, text in (("customers", CUSTOMERS), ("orders", ORDERS)):
        path = folder / f"{name}.csv"
        path.write_text(text)
        import_table(pool, domain, path)
    with pool.connection() as conn:
        add_join(conn, domain, "orders.customer_id", "customers.customer_id")
        # A server table with something worth stealing: the sandbox must never reach it.
        conn.execute("CREATE TABLE IF NOT EXISTS public.secrets (token text)")
        conn.execute("INSERT INTO public.secrets VALUES ('s3cr3t')")
    return domain


@pytest.fixture(scope="module")
def shop(module_pool: ConnectionPool, tmp_path_factory: pytest.TempPathFactory) -> Domain:
    return make_shop(module_pool, tmp_path_factory.mktemp("shop"))


@pytest.fixture(scope="module")
def shop_catalog(module_pool: ConnectionPool, shop: Domain) -> Catalog:
    with module_pool.connection() as conn:
        return load_catalog(conn, shop)
