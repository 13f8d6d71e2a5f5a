-- Trained rerankers and their promotion decisions, per domain. Every training run is a row, refused ones
-- too (their model is not kept); the newest promoted row of a domain is the reranker that serves it.
CREATE TABLE rerankers (
    id          serial PRIMARY KEY,
    domain_id   integer NOT NULL REFERENCES domains (id) ON DELETE CASCADE,
    kind        text NOT NULL,
    promoted    boolean NOT NULL,
    -- Both nDCG@10 (hybrid and reranked, held out), p-value, margin, protocol, data sizes, features.
    decision    jsonb NOT NULL,
    -- The model (see rag_server/rerank/model.py) when promoted, else NULL.
    model       jsonb,
    trained_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (promoted = (model IS NOT NULL))
);

CREATE INDEX rerankers_domain_idx ON rerankers (domain_id, id);
CREATE INDEX rerankers_promoted_idx ON rerankers (domain_id, id) WHERE promoted;
