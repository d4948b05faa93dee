"""Migration 1 — `product_info`: one row of KIS product metadata per stock."""

from migrations.runbook import entry_points, main
from migrations.steps import Ddl, Precondition

# stock_code is varchar(10), as stocks.code in the contract: a wider stocks.code is accepted
# while every code fits; a longer code could never get a product_info row.
PRECONDITIONS = (
    Precondition(
        sql="""
SELECT format('%L (%s)', code, length(code)) FROM public.stocks
WHERE (SELECT atttypmod FROM pg_catalog.pg_attribute
       WHERE attrelid = 'public.stocks'::regclass AND attname = 'code') NOT BETWEEN 5 AND 14
  AND length(code) > 10
ORDER BY code LIMIT 5
""",
        problem="stocks has codes longer than the new tables' stock_code varchar(10) can hold",
    ),
    Precondition(
        sql="""
SELECT 'CREATE on schema public' WHERE NOT has_schema_privilege('public', 'CREATE')
UNION ALL
SELECT 'REFERENCES on public.stocks' WHERE NOT has_table_privilege('public.stocks', 'REFERENCES')
""",
        problem="the deploying role may not create the new tables; it lacks",
    ),
)

UPGRADE = (
    Ddl("""
CREATE TABLE product_info (
    id serial PRIMARY KEY,
    stock_code varchar(10) NOT NULL,
    prdt_name varchar(120),
    prdt_clsf_name varchar(100),
    ivst_prdt_type_cd_name varchar(100),
    prdt_risk_grad_cd varchar(10),
    frst_erlm_dt varchar(8),
    created_at timestamp NOT NULL DEFAULT now(),
    updated_at timestamp NOT NULL DEFAULT now(),
    CONSTRAINT uq_product_info_stock_code UNIQUE (stock_code),
    CONSTRAINT fk_product_stock FOREIGN KEY (stock_code)
        REFERENCES stocks (code) ON DELETE CASCADE
);
CREATE INDEX idx_product_info_stock_code ON product_info (stock_code);
COMMENT ON TABLE product_info IS 'KIS API product basic info: one row per stock (US-001)';
CREATE FUNCTION update_product_info_updated_at() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER trigger_product_info_updated_at
    BEFORE UPDATE ON product_info
    FOR EACH ROW EXECUTE FUNCTION update_product_info_updated_at();
"""),
)

DOWNGRADE = (
    Ddl("""
DROP TABLE product_info;
DROP FUNCTION update_product_info_updated_at();
"""),
)

upgrade, downgrade = entry_points(__name__)

if __name__ == "__main__":
    main()
