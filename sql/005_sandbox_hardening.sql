-- Defence in depth for the sql route's sandbox (rag_server/sql/sandbox.py), for a statement that got past the
-- validator: the reader role `rag_sql_reader` gets only what PUBLIC has, so what it must not do is revoked from
-- PUBLIC here and granted back to the user that runs the migrations (the application's own user, which needs
-- advisory locks, set_config and the catalogs). Superusers are not affected by either.
--   * advisory locks: a session lock would outlive the sandbox's rolled-back transaction, and a transaction
--     lock could hold up the application's own locks until the statement timeout;
--   * set_config: `set_config('role', ...)` inside a statement would switch the sandbox's role back;
--   * pg_cancel_backend and pg_terminate_backend;
--   * catalogs that list roles, sessions, settings, databases and other schemas' relations, functions and
--     columns, and the information_schema.
-- Functions and catalogs belong to the bootstrap superuser: a user that can neither revoke nor grant them
-- (not a superuser) gets a notice and the migration goes on; the validator is then the only line.
DO $$
DECLARE
    owner text := current_user;
    found record;
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RAISE NOTICE 'not a superuser: the sandbox keeps PUBLIC''s rights to advisory locks and the catalogs';
        RETURN;
    END IF;
    FOR found IN
        SELECT p.oid::regprocedure AS fn
        FROM pg_proc p
        WHERE p.pronamespace = 'pg_catalog'::regnamespace
          AND (p.proname LIKE 'pg\_advisory\_%' OR p.proname LIKE 'pg\_try\_advisory\_%'
               OR p.proname IN ('set_config', 'pg_cancel_backend', 'pg_terminate_backend'))
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', found.fn);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', found.fn, owner);
    END LOOP;
    FOR found IN
        SELECT c.oid::regclass AS relation
        FROM pg_class c
        WHERE c.relnamespace = 'pg_catalog'::regnamespace
          AND (c.relname IN (
              'pg_user', 'pg_roles', 'pg_group', 'pg_auth_members', 'pg_stat_activity', 'pg_locks',
              'pg_settings', 'pg_database', 'pg_namespace', 'pg_class', 'pg_attribute', 'pg_proc',
              'pg_tables', 'pg_views', 'pg_matviews', 'pg_indexes', 'pg_sequences', 'pg_description',
              'pg_prepared_xacts', 'pg_prepared_statements', 'pg_cursors')
            -- the statistics views list every relation, session and replica (pg_stats filters by rights)
            OR c.relname LIKE 'pg\_stat\_%' OR c.relname LIKE 'pg\_statio\_%')
    LOOP
        EXECUTE format('REVOKE SELECT ON %s FROM PUBLIC', found.relation);
        EXECUTE format('GRANT SELECT ON %s TO %I', found.relation, owner);
    END LOOP;
    REVOKE USAGE ON SCHEMA information_schema FROM PUBLIC;
    EXECUTE format('GRANT USAGE ON SCHEMA information_schema TO %I', owner);
END
$$;
