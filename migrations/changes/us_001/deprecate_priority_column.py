"""Migration 3 — `stocks.priority` deprecated: every value becomes 1, losslessly.

Phases: (1) DDL: the backup table, keeping the column's previous default and comment in
its table comment, the trigger that pins new values to 1, the new default and comment;
(2) data: keyset batches by `code`, each a short transaction that saves the old values and
updates together. The trigger saves the old value of a row the application writes before
its batch reaches it, so that no write during the deployment loses an original priority.

The downgrade keeps the application's writes made during it: (1) the trigger's function
stops pinning and, when the application writes a new priority (or a new stock), notes the
row as the application's (saved_at -infinity) instead; (2) batches put back every original
still saved: in a batch the trigger skips a row that the application wrote after the batch's
statement began (its read sees that write once committed, however long the batch waited for
the row), and the originals are deleted after the updates, so that row locks are taken in
the order an application's write takes them (stocks, then the saved row); (3) under a short
ACCESS EXCLUSIVE lock: the noted rows are read (the runner adds them to the image
verification judges by), the trigger dropped, the default and comment restored exactly, and
what the upgrade made dropped. A write the pinning trigger turned into 1 before the downgrade
began is undone (the original comes back); one that waits for phase 3's lock lands after
the rollback, the application's like any later write.
"""

from migrations.runbook import entry_points, main
from migrations.steps import Batches, Ddl, Precondition

# ALTER TABLE and CREATE TRIGGER on stocks are its owner's: checked before the first migration
# of the run changes anything, so that a role with fewer rights leaves no half deployment.
PRECONDITIONS = (
    Precondition(
        sql="""
SELECT format('%s is not a member of %s, the owner of public.stocks', current_user, relowner::regrole)
FROM pg_catalog.pg_class
WHERE oid = 'public.stocks'::regclass AND NOT pg_has_role(current_user, relowner, 'USAGE')
""",
        problem="the deploying role may not alter stocks",
    ),
)

UPGRADE = (
    Ddl("""
CREATE TABLE IF NOT EXISTS stocks_priority_backup (
    code varchar(10) PRIMARY KEY,
    priority integer,
    saved_at timestamp NOT NULL DEFAULT now()
);
DO $$
BEGIN
    IF obj_description('stocks_priority_backup'::regclass, 'pg_class') IS NULL THEN
        EXECUTE format(
            'COMMENT ON TABLE stocks_priority_backup IS %L',
            json_build_object(
                'default', (SELECT pg_get_expr(d.adbin, d.adrelid)
                            FROM pg_attrdef d
                            JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
                            WHERE a.attrelid = 'stocks'::regclass AND a.attname = 'priority'),
                'comment', (SELECT col_description(a.attrelid, a.attnum)
                            FROM pg_attribute a
                            WHERE a.attrelid = 'stocks'::regclass AND a.attname = 'priority')
            )::text);
    END IF;
END
$$;
CREATE OR REPLACE FUNCTION stocks_priority_deprecated() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    -- The application's write reaching a row before its batch does: keep the old value for
    -- the rollback. (The batches save their rows in bulk themselves, and say so.)
    IF TG_OP = 'UPDATE' AND OLD.priority IS DISTINCT FROM 1
       AND current_setting('azak.priority_batch', true) IS DISTINCT FROM 'on' THEN
        INSERT INTO public.stocks_priority_backup (code, priority) VALUES (OLD.code, OLD.priority)
        ON CONFLICT (code) DO NOTHING;
    END IF;
    NEW.priority := 1;
    RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS trigger_stocks_priority_deprecated ON stocks;
CREATE TRIGGER trigger_stocks_priority_deprecated
    BEFORE INSERT OR UPDATE OF priority ON stocks
    FOR EACH ROW EXECUTE FUNCTION stocks_priority_deprecated();
-- A downgrade stopped half-way noted the application's writes during it (saved_at -infinity):
-- the values they wrote are the ones this deprecation saves now.
UPDATE stocks_priority_backup b SET priority = s.priority, saved_at = now()
FROM stocks s
WHERE s.code = b.code AND b.saved_at = '-infinity' AND s.priority IS DISTINCT FROM 1;
DELETE FROM stocks_priority_backup WHERE saved_at = '-infinity';
ALTER TABLE stocks ALTER COLUMN priority SET DEFAULT 1;
COMMENT ON COLUMN stocks.priority IS
    'DEPRECATED (US-001): always 1, kept for API compatibility; was 크롤링 우선순위 (1~5)';
"""),
    Batches(
        """
SELECT set_config('azak.priority_batch', 'on', true);
WITH bound AS (
    SELECT max(code) AS upper FROM (
        SELECT code FROM stocks
        WHERE (%(after)s::text IS NULL OR code > %(after)s)
        ORDER BY code
        LIMIT %(batch_size)s
    ) AS next_keys
), saved AS (
    INSERT INTO stocks_priority_backup (code, priority)
    SELECT code, priority FROM stocks
    WHERE (%(after)s::text IS NULL OR code > %(after)s) AND code <= (SELECT upper FROM bound)
      AND priority IS DISTINCT FROM 1
    ON CONFLICT (code) DO NOTHING
), changed AS (
    UPDATE stocks SET priority = 1
    WHERE (%(after)s::text IS NULL OR code > %(after)s) AND code <= (SELECT upper FROM bound)
      AND priority IS DISTINCT FROM 1
    RETURNING code
)
SELECT (SELECT upper FROM bound), (SELECT count(*) FROM changed);
""",
        total="SELECT count(*) FROM stocks",
    ),
)

DOWNGRADE = (
    Ddl("""
CREATE OR REPLACE FUNCTION stocks_priority_deprecated() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('azak.priority_batch', true) IS NOT DISTINCT FROM 'on' THEN
        -- A restoring batch: it puts the original back unless the application has written the
        -- row since the batch's statement began (this read sees that write, once committed).
        IF EXISTS (SELECT FROM public.stocks_priority_backup
                   WHERE code = OLD.code AND saved_at = '-infinity') THEN
            RETURN NULL;
        END IF;
    ELSIF TG_OP = 'INSERT' OR NEW.priority IS DISTINCT FROM OLD.priority THEN
        -- Rolling back: a priority the application writes stands. The row is noted as the
        -- application's, so that no restoring batch overwrites it and verification expects it.
        -- (A write of the value already there, 1 on a row not yet restored, is no new one.)
        INSERT INTO public.stocks_priority_backup (code, priority, saved_at)
        VALUES (NEW.code, NEW.priority, '-infinity')
        ON CONFLICT (code) DO UPDATE SET priority = excluded.priority, saved_at = excluded.saved_at;
    END IF;
    RETURN NEW;
END
$$;
"""),
    Batches(
        """
SELECT set_config('azak.priority_batch', 'on', true);
WITH bound AS (
    SELECT max(code) AS upper FROM (
        SELECT code FROM stocks_priority_backup
        WHERE (%(after)s::text IS NULL OR code > %(after)s) AND saved_at > '-infinity'
        ORDER BY code
        LIMIT %(batch_size)s
    ) AS next_keys
), changed AS (
    -- the trigger skips a row the application wrote after this statement began
    UPDATE stocks s SET priority = b.priority
    FROM stocks_priority_backup b
    WHERE (%(after)s::text IS NULL OR b.code > %(after)s) AND b.code <= (SELECT upper FROM bound)
      AND b.saved_at > '-infinity' AND s.code = b.code
    RETURNING s.code
), restored AS (
    -- after the updates (their row locks first, the order an application's write takes them);
    -- a row the application noted since is no original and stays
    DELETE FROM stocks_priority_backup b
    WHERE (SELECT count(*) FROM changed) >= 0
      AND (%(after)s::text IS NULL OR b.code > %(after)s) AND b.code <= (SELECT upper FROM bound)
      AND b.saved_at > '-infinity'
)
SELECT (SELECT upper FROM bound), (SELECT count(*) FROM changed);
""",
        total="SELECT count(*) FROM stocks_priority_backup WHERE saved_at > '-infinity'",
    ),
    Ddl(
        kept="""
LOCK TABLE stocks IN ACCESS EXCLUSIVE MODE;
SELECT code, priority FROM stocks_priority_backup WHERE saved_at = '-infinity' ORDER BY code;
""",
        sql="""
DROP TRIGGER IF EXISTS trigger_stocks_priority_deprecated ON stocks;
DO $$
DECLARE
    saved json := obj_description('stocks_priority_backup'::regclass, 'pg_class')::json;
    left_over bigint := (SELECT count(*) FROM stocks_priority_backup WHERE saved_at > '-infinity');
BEGIN
    IF left_over > 0 THEN
        RAISE EXCEPTION 'stocks_priority_backup still holds % original rows: not dropping it', left_over;
    END IF;
    IF saved->>'default' IS NULL THEN
        ALTER TABLE stocks ALTER COLUMN priority DROP DEFAULT;
    ELSE
        EXECUTE format('ALTER TABLE stocks ALTER COLUMN priority SET DEFAULT %s',
                       saved->>'default');
    END IF;
    EXECUTE format('COMMENT ON COLUMN stocks.priority IS %L', saved->>'comment');
END
$$;
DROP TABLE stocks_priority_backup;
DROP FUNCTION stocks_priority_deprecated();
""",
    ),
)

upgrade, downgrade = entry_points(__name__)

if __name__ == "__main__":
    main()
