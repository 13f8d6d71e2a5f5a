-- Trained query routers, versioned per domain; the newest version of a domain is the one used.
CREATE TABLE router_models (
    id          serial PRIMARY KEY,
    domain_id   integer NOT NULL REFERENCES domains (id) ON DELETE CASCADE,
    version     integer NOT NULL,
    -- Weights and scaling as plain arrays (see rag_server/routing/model.py), and training metrics.
    model       jsonb NOT NULL,
    trained_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (domain_id, version)
);
