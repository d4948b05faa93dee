"""Migration (test-only): product names normalised (trimmed, upper case), the originals
kept for the rollback, in keyset batches by product_info.id (as US-001's priority step does)."""

from migrations.runbook import entry_points, main
from migrations.steps import Batches, Ddl

UPGRADE = (
    Ddl("""
CREATE TABLE IF NOT EXISTS product_name_backup (
    id integer PRIMARY KEY,
    prdt_name varchar(120)
);
"""),
    Batches("""
WITH bound AS (
    SELECT max(id) AS upper FROM (
        SELECT id FROM product_info
        WHERE (%(after)s::integer IS NULL OR id > %(after)s::integer)
        ORDER BY id
        LIMIT %(batch_size)s
    ) AS next_keys
), saved AS (
    INSERT INTO product_name_backup (id, prdt_name)
    SELECT id, prdt_name FROM product_info
    WHERE (%(after)s::integer IS NULL OR id > %(after)s::integer) AND id <= (SELECT upper FROM bound)
      AND prdt_name IS DISTINCT FROM upper(btrim(prdt_name))
    ON CONFLICT (id) DO NOTHING
), changed AS (
    UPDATE product_info SET prdt_name = upper(btrim(prdt_name))
    WHERE (%(after)s::integer IS NULL OR id > %(after)s::integer) AND id <= (SELECT upper FROM bound)
      AND prdt_name IS DISTINCT FROM upper(btrim(prdt_name))
    RETURNING id
)
SELECT (SELECT upper FROM bound), (SELECT count(*) FROM changed);
"""),
)

DOWNGRADE = (
    Batches("""
WITH bound AS (
    SELECT max(id) AS upper FROM (
        SELECT id FROM product_name_backup
        WHERE (%(after)s::integer IS NULL OR id > %(after)s::integer)
        ORDER BY id
        LIMIT %(batch_size)s
    ) AS next_keys
), changed AS (
    UPDATE product_info p SET prdt_name = b.prdt_name
    FROM product_name_backup b
    WHERE (%(after)s::integer IS NULL OR b.id > %(after)s::integer) AND b.id <= (SELECT upper FROM bound)
      AND p.id = b.id
    RETURNING p.id
), restored AS (
    DELETE FROM product_name_backup
    WHERE (%(after)s::integer IS NULL OR id > %(after)s::integer) AND id <= (SELECT upper FROM bound)
)
SELECT (SELECT upper FROM bound), (SELECT count(*) FROM changed);
"""),
    Ddl("""
DROP TABLE product_name_backup;
"""),
)

upgrade, downgrade = entry_points(__name__)

if __name__ == "__main__":
    main()
