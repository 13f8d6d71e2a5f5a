-- Domains, documents, chunks and ingestion runs.

CREATE EXTENSION IF NOT EXISTS vector;

-- Every model that embedded chunks, with its dimension. Chunks store untyped `vector` and each model gets its
-- own partial HNSW index (created by the application on first use), so models of different dimensions live
-- side by side without one corrupting the other.
CREATE TABLE embedding_models (
    id          serial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    dimension   integer NOT NULL CHECK (dimension BETWEEN 1 AND 16000),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A domain is one knowledge base: its documents, its embedding model, later its tables and reranker.
CREATE TABLE domains (
    id                  serial PRIMARY KEY,
    name                text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    embedding_model_id  integer NOT NULL REFERENCES embedding_models (id),
    -- Moves with every commit that changes the domain's chunks: caches (the BM25 index) reload when it does.
    generation          bigint NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE documents (
    id            bigserial PRIMARY KEY,
    domain_id     integer NOT NULL REFERENCES domains (id) ON DELETE CASCADE,
    external_id   text NOT NULL,
    source        text NOT NULL,
    title         text,
    -- sha256 of what was loaded (text, title, metadata); `ingest_signature` names the chunking and analysis
    -- that turned it into chunks. A document is skipped on re-ingest only when both are unchanged.
    content_hash      bytea NOT NULL,
    ingest_signature  text NOT NULL,
    metadata      jsonb NOT NULL DEFAULT '{}',
    chunk_count   integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (domain_id, external_id)
);

CREATE INDEX documents_metadata_idx ON documents USING gin (metadata jsonb_path_ops);
CREATE INDEX documents_source_idx ON documents (domain_id, source);

CREATE TABLE chunks (
    id                  bigserial PRIMARY KEY,
    document_id         bigint NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    -- Copied from the document so that the vector index scan can filter on it without a join.
    domain_id           integer NOT NULL REFERENCES domains (id) ON DELETE CASCADE,
    ordinal             integer NOT NULL,
    text                text NOT NULL,
    token_count         integer NOT NULL,
    heading_path        text[] NOT NULL DEFAULT '{}',
    embedding_model_id  integer NOT NULL REFERENCES embedding_models (id),
    embedding           vector NOT NULL,
    -- The keyword route's analysis of `text` (lower-cased, stemmed terms, identifiers whole), made at ingest.
    terms               text[] NOT NULL DEFAULT '{}',
    UNIQUE (document_id, ordinal)
);

CREATE INDEX chunks_domain_idx ON chunks (domain_id);

CREATE TABLE ingestion_runs (
    id            bigserial PRIMARY KEY,
    domain_id     integer NOT NULL REFERENCES domains (id) ON DELETE CASCADE,
    status        text NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'finished', 'failed', 'interrupted')),
    paths         text[] NOT NULL,
    pid           integer,
    hostname      text,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    documents_added      integer NOT NULL DEFAULT 0,
    documents_updated    integer NOT NULL DEFAULT 0,
    documents_unchanged  integer NOT NULL DEFAULT 0,
    documents_failed     integer NOT NULL DEFAULT 0,
    documents_pruned     integer NOT NULL DEFAULT 0,
    chunks_written       integer NOT NULL DEFAULT 0,
    -- [{"path": ..., "reason": ...}] for every file that was skipped.
    errors        jsonb NOT NULL DEFAULT '[]'
);
