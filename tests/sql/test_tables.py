"""Importing CSV, JSON-lines and Parquet files as typed tables, the catalog, and registering existing tables."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg_pool import ConnectionPool

from ingest.tables import import_table, import_table_files, parse_type_overrides
from rag_server.config import PACKAGED_EMBEDDING_MODEL
from rag_server.domains import Domain, HnswOptions, delete_domain, ensure_domain
from rag_server.errors import IngestError, NotFound, RetrievalError
from rag_server.sql.catalog import add_join, describe, drop_table, load_catalog, register_table


@pytest.fixture
def domain(pool: ConnectionPool) -> Domain:
    with pool.connection() as conn:
        return ensure_domain(conn, "sales", PACKAGED_EMBEDDING_MODEL, 384, HnswOptions())


def catalog(pool: ConnectionPool, domain: Domain):
    with pool.connection() as conn:
        return load_catalog(conn, domain)


def test_csv_types_are_inferred_and_values_recorded(
    pool: ConnectionPool, domain: Domain, tmp_path: Path
) -> None:
    path = tmp_path / "Order Lines.csv"
    path.write_text(
        "Order ID,amount,paid,day,region\n1,9.5,true,2024-01-02,eu\n2,,false,2024-02-03,us\n3,4,true,,eu\n"
    )
    imported = import_table(pool, domain, path)
    assert imported.name == "order_lines" and imported.rows == 3
    assert imported.columns == {
        "order_id": "bigint",
        "amount": "double precision",
        "paid": "boolean",
        "day": "date",
        "region": "text",
    }
    table = catalog(pool, domain).table("order_lines")
    assert table.row_count == 3 and table.origin == "imported"
    region = table.column("region")
    assert region.categorical and set(region.sample_values) == {"eu", "us"}
    with pool.connection() as conn:
        assert (
            conn.execute(f"SELECT sum(amount) FROM domain_tables_{domain.id}.order_lines").fetchone()[0]
            == 13.5
        )


def test_jsonl_and_parquet(pool: ConnectionPool, domain: Domain, tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_text(
        '{"id": 1, "kind": "a", "tags": ["x"]}\n{"id": 2, "kind": "b", "tags": []}\n'
    )
    pq.write_table(pa.table({"sku": ["A1", "B2"], "price": [1.25, 2.5]}), tmp_path / "products.parquet")
    report = import_table_files(pool, domain, [tmp_path / "events.jsonl", tmp_path / "products.parquet"], {})
    assert not report["failed"]
    tables = catalog(pool, domain).tables
    assert tables["events"].column("tags").data_type == "jsonb"
    assert tables["products"].column("price").data_type == "double precision"


def test_type_overrides_and_bad_overrides(pool: ConnectionPool, domain: Domain, tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("id,amount\n1,10.10\n2,20.20\n")
    import_table(pool, domain, path, type_overrides=parse_type_overrides(["amount=numeric(10,2)"]))
    assert catalog(pool, domain).table("orders").column("amount").data_type == "numeric(10,2)"
    with pytest.raises(IngestError, match="bad type override"):
        parse_type_overrides(["amount=text; DROP TABLE x"])
    with pytest.raises(IngestError, match="unknown column"):
        import_table(pool, domain, path, type_overrides={"nope": "text"})


def test_failed_reimport_keeps_the_old_table_and_edits_survive_a_good_one(
    pool: ConnectionPool, domain: Domain, tmp_path: Path
) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("id,amount\n1,10\n2,20\n")
    import_table(pool, domain, path)
    with pool.connection() as conn:
        describe(conn, domain, "orders", "Every order")
        describe(conn, domain, "orders.amount", "Dollars")
    path.write_text("id,amount\n1,10.5\n2,x\n3,7\n")
    with pytest.raises(IngestError):
        import_table(pool, domain, path, type_overrides={"amount": "integer"})
    assert catalog(pool, domain).table("orders").row_count == 2
    path.write_text("id,amount,note\n1,10,a\n2,20,b\n3,30,c\n")
    import_table(pool, domain, path)
    table = catalog(pool, domain).table("orders")
    assert table.row_count == 3 and table.description == "Every order"
    assert table.column("amount").description == "Dollars" and table.column("note") is not None


def test_broken_file_is_reported_and_the_rest_lands(
    pool: ConnectionPool, domain: Domain, tmp_path: Path
) -> None:
    (tmp_path / "good.csv").write_text("a,b\n1,2\n")
    (tmp_path / "ragged.csv").write_text("a,b\n1,2,3,4\n")
    (tmp_path / "empty.parquet").write_bytes(b"not parquet")
    report = import_table_files(
        pool, domain, [tmp_path / "empty.parquet", tmp_path / "good.csv", tmp_path / "ragged.csv"], {}
    )
    assert [t["table"] for t in report["imported"]] == ["good"]
    assert sorted(Path(f["path"]).name for f in report["failed"]) == ["empty.parquet", "ragged.csv"]


def test_catalog_file_adds_descriptions_and_joins(
    pool: ConnectionPool, domain: Domain, tmp_path: Path
) -> None:
    (tmp_path / "customers.csv").write_text("customer_id,name\n1,Acme\n")
    (tmp_path / "orders.csv").write_text("order_id,customer_id\n1,1\n")
    (tmp_path / "catalog.json").write_text(
        '{"tables": {"orders": {"description": "Invoices", "columns": {"customer_id": "Who paid"}}},'
        ' "joins": [{"left": "orders.customer_id", "right": "customers.customer_id"}]}'
    )
    report = import_table_files(pool, domain, [tmp_path / "customers.csv", tmp_path / "orders.csv"], {})
    assert report["catalog_entries"] == 3
    found = catalog(pool, domain)
    assert found.table("orders").description == "Invoices"
    assert [str(join) for join in found.joins_between("customers", "orders")] == [
        "customers.customer_id = orders.customer_id"
    ]


def test_register_an_existing_view_and_refuse_server_tables(pool: ConnectionPool, domain: Domain) -> None:
    with pool.connection() as conn:
        conn.execute("CREATE SCHEMA crm")
        conn.execute("CREATE TABLE crm.accounts (id int, tier text)")
        conn.execute("INSERT INTO crm.accounts VALUES (1, 'gold'), (2, 'silver')")
        conn.execute("CREATE VIEW crm.gold_accounts AS SELECT * FROM crm.accounts WHERE tier = 'gold'")
        assert register_table(conn, domain, "crm.gold_accounts", None, "Gold tier only") == "gold_accounts"
        for relation in ("public.chunks", "pg_catalog.pg_authid", "sql_tables"):
            with pytest.raises((RetrievalError, NotFound)):
                register_table(conn, domain, relation, None, None)
        with pytest.raises(NotFound):
            register_table(conn, domain, "crm.missing", None, None)
    table = catalog(pool, domain).table("gold_accounts")
    assert (table.origin, table.schema_name, table.row_count) == ("registered", "crm", 1)


def test_join_must_name_real_columns_and_drop_removes_the_table(
    pool: ConnectionPool, domain: Domain, tmp_path: Path
) -> None:
    (tmp_path / "a.csv").write_text("x\n1\n")
    import_table(pool, domain, tmp_path / "a.csv")
    with pool.connection() as conn:
        with pytest.raises(RetrievalError):
            add_join(conn, domain, "a.x", "a.nope")
        drop_table(conn, domain, "a")
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute(f"SELECT * FROM domain_tables_{domain.id}.a")
    assert not catalog(pool, domain).tables


def test_deleting_the_domain_drops_its_table_schema(
    pool: ConnectionPool, domain: Domain, tmp_path: Path
) -> None:
    (tmp_path / "a.csv").write_text("x\n1\n")
    import_table(pool, domain, tmp_path / "a.csv")
    with pool.connection() as conn:
        delete_domain(conn, "sales")
        assert (
            conn.execute(
                "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (f"domain_tables_{domain.id}",)
            ).fetchone()[0]
            == 0
        )
