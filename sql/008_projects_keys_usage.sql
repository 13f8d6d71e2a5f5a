-- Projects, their API keys, rate limits, budgets, the request log (usage) and feedback. Postgres is the one
-- source of truth: every counter below is updated atomically by a single statement, so N workers on any
-- number of machines share each limit without in-process state.

-- A project owns domains and keys and pays for its requests. Every existing domain joins project 'default'.
CREATE TABLE projects (
    id                  serial PRIMARY KEY,
    name                text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    -- Dollars per calendar month (UTC); NULL = no budget. Past `budget_alert` of it, usage says so.
    monthly_budget_usd  numeric(14, 6) CHECK (monthly_budget_usd >= 0),
    budget_alert        real NOT NULL DEFAULT 0.8 CHECK (budget_alert > 0 AND budget_alert <= 1),
    created_at          timestamptz NOT NULL DEFAULT now()
);

INSERT INTO projects (name) VALUES ('default');

-- A domain created without a project (the CLI's default) belongs to 'default'.
CREATE FUNCTION default_project_id() RETURNS integer LANGUAGE sql STABLE
    AS $$ SELECT id FROM projects WHERE name = 'default' $$;

ALTER TABLE domains ADD COLUMN project_id integer NOT NULL DEFAULT default_project_id()
    REFERENCES projects (id) ON DELETE CASCADE;
CREATE INDEX domains_project_idx ON domains (project_id);

-- A key is shown once; only its SHA-256 is kept (keys are 32 random bytes, so a slow hash buys nothing).
-- `domains` NULL = every domain of the project. Limits NULL = none.
CREATE TABLE api_keys (
    id                   serial PRIMARY KEY,
    project_id           integer NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name                 text NOT NULL,
    prefix               text NOT NULL,
    hash                 bytea NOT NULL UNIQUE,
    role                 text NOT NULL CHECK (role IN ('reader', 'owner')),
    domains              text[],
    requests_per_minute  integer CHECK (requests_per_minute > 0),
    tokens_per_minute    integer CHECK (tokens_per_minute > 0),
    created_at           timestamptz NOT NULL DEFAULT now(),
    revoked_at           timestamptz
);

CREATE INDEX api_keys_project_idx ON api_keys (project_id);

-- One row per key and minute: requests counted, tokens reserved or spent. Old windows are deleted lazily.
CREATE TABLE rate_windows (
    key_id        integer NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    window_start  timestamptz NOT NULL,
    requests      integer NOT NULL DEFAULT 0,
    tokens        bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, window_start)
);

-- Spend per project and month: `reserved` holds the worst case of requests in flight, settled into `spent`.
CREATE TABLE project_spend (
    project_id    integer NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    month         date NOT NULL,
    spent_usd     numeric(14, 6) NOT NULL DEFAULT 0,
    reserved_usd  numeric(14, 6) NOT NULL DEFAULT 0 CHECK (reserved_usd >= 0),
    PRIMARY KEY (project_id, month)
);

-- Every metered request (ask, search, chat completions): what usage reports and feedback points to.
CREATE TABLE requests (
    id                 text PRIMARY KEY,
    project_id         integer NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    key_id             integer REFERENCES api_keys (id) ON DELETE SET NULL,
    endpoint           text NOT NULL,
    domain             text,
    route              text,
    status             integer NOT NULL,
    prompt_tokens      integer NOT NULL DEFAULT 0,
    cached_tokens      integer NOT NULL DEFAULT 0,
    completion_tokens  integer NOT NULL DEFAULT 0,
    cost_usd           numeric(14, 8) NOT NULL DEFAULT 0,
    cache_hit          boolean NOT NULL DEFAULT false,
    abstained          boolean NOT NULL DEFAULT false,
    question           text,
    -- The response (answer, citations, evidence ids) and the request trace, for feedback and training.
    trace              jsonb NOT NULL DEFAULT '{}',
    created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX requests_project_day_idx ON requests (project_id, created_at);

CREATE TABLE feedback (
    id                serial PRIMARY KEY,
    request_id        text NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    key_id            integer REFERENCES api_keys (id) ON DELETE SET NULL,
    helpful           boolean NOT NULL,
    comment           text,
    -- Chunk ids (or document ids) the user says held the answer: labels for train-reranker / train-router.
    correct_evidence  jsonb,
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX feedback_request_idx ON feedback (request_id);

-- The semantic answer cache (RAG_ANSWER_CACHE=semantic): the question as asked, its embedding (the domain's
-- model) and a hash of the answer-changing settings, so that a near-identical question under the same settings
-- can replay an entry. NULL for entries made by the exact cache only.
ALTER TABLE answer_cache
    ADD COLUMN question      text,
    ADD COLUMN settings_key  bytea,
    ADD COLUMN embedding     vector;

-- Per-domain retrieval settings found by `rag-server tune`, every run kept like the rerankers': the newest
-- promoted row of a domain overrides the global settings it names, for that domain only.
CREATE TABLE tunings (
    id         serial PRIMARY KEY,
    domain_id  integer NOT NULL REFERENCES domains (id) ON DELETE CASCADE,
    promoted   boolean NOT NULL,
    -- The winning settings (names of `Settings` fields and their values); empty when refused.
    settings   jsonb NOT NULL DEFAULT '{}',
    -- Every configuration tried with its held-out nDCG@10, the baseline, p-value, margin, protocol, data size.
    decision   jsonb NOT NULL,
    tuned_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX tunings_domain_idx ON tunings (domain_id, id);
