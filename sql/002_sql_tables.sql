-- The sql route's catalog: tables a domain's questions may query, their columns, joins and verified examples.

-- A table is either imported (a file loaded into the domain's own schema, `domain_tables_<id>`) or
-- registered (an existing table or view of the database, exposed under a name). `name` is what questions and
-- generated SQL call it; `schema_name`.`relation` is where it lives.
CREATE TABLE sql_tables (
    id           serial PRIMARY KEY,
    domain_id    integer NOT NULL REFERENCES domains (id) ON DELETE CASCADE,
    name         text NOT NULL CHECK (name ~ '^[a-z_][a-z0-9_]{0,62}$'),
    schema_name  text NOT NULL,
    relation     text NOT NULL,
    origin       text NOT NULL CHECK (origin IN ('imported', 'registered')),
    source       text,
    description  text NOT NULL DEFAULT '',
    row_count    bigint NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (domain_id, name)
);

CREATE TABLE sql_columns (
    table_id     integer NOT NULL REFERENCES sql_tables (id) ON DELETE CASCADE,
    ordinal      integer NOT NULL,
    name         text NOT NULL,
    data_type    text NOT NULL,
    description  text NOT NULL DEFAULT '',
    -- Every distinct value when there are few (the generator filters on them), else a handful of samples.
    sample_values   jsonb NOT NULL DEFAULT '[]',
    distinct_count  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (table_id, name)
);

-- Joins the generators may use: left.column = right.column.
CREATE TABLE sql_joins (
    id            serial PRIMARY KEY,
    domain_id     integer NOT NULL REFERENCES domains (id) ON DELETE CASCADE,
    left_table    text NOT NULL,
    left_column   text NOT NULL,
    right_table   text NOT NULL,
    right_column  text NOT NULL,
    UNIQUE (domain_id, left_table, left_column, right_table, right_column)
);

-- Verified question -> SQL pairs, retrieved by similarity as few-shot examples for the model.
CREATE TABLE sql_examples (
    id          bigserial PRIMARY KEY,
    domain_id   integer NOT NULL REFERENCES domains (id) ON DELETE CASCADE,
    question    text NOT NULL,
    sql         text NOT NULL,
    embedding   vector NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (domain_id, question)
);
