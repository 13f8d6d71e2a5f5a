-- Answers kept for repeated questions. `key` hashes the normalized question, the domain and every setting that
-- changes an answer; `generation` and `catalog` are the domain's document generation and table stamp when
-- the answer was made: an ingest or a table import moves them, and an entry that no longer matches is a miss.
CREATE TABLE answer_cache (
    domain_id   integer NOT NULL REFERENCES domains (id) ON DELETE CASCADE,
    key         bytea NOT NULL,
    generation  bigint NOT NULL,
    catalog     text NOT NULL,
    response    jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    hits        bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (domain_id, key)
);
