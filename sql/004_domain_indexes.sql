-- One HNSW index per domain instead of one per embedding model. With one per model, a domain's semantic search
-- walked the neighbours of every other domain of that model and filtered them out (or the planner gave up on
-- the index for a small domain and scanned it): with the four shared eval sets and the demo in one database,
-- 9-16 ms a search instead of about 2. New domains get theirs from the application (at the configured
-- precision and build parameters); existing ones get a float32 index with the default parameters here.
DO $$
DECLARE
    found record;
BEGIN
    FOR found IN
        SELECT d.id, m.dimension FROM domains d JOIN embedding_models m ON m.id = d.embedding_model_id
    LOOP
        EXECUTE format(
            'CREATE INDEX IF NOT EXISTS %I ON chunks USING hnsw ((embedding::vector(%s)) vector_cosine_ops)'
            ' WITH (m = 16, ef_construction = 64) WHERE domain_id = %s',
            'chunks_domain_' || found.id || '_hnsw', found.dimension, found.id
        );
    END LOOP;
    FOR found IN
        SELECT indexname FROM pg_indexes
        WHERE schemaname = current_schema() AND tablename = 'chunks' AND indexname LIKE 'chunks\_embedding\_model\_%'
    LOOP
        EXECUTE format('DROP INDEX %I', found.indexname);
    END LOOP;
END
$$;
