"""Migration 2 — `financial_ratios`: yearly / quarterly KIS financial ratios per stock."""

from migrations.runbook import entry_points, main
from migrations.steps import Ddl

UPGRADE = (
    Ddl("""
CREATE TABLE financial_ratios (
    id serial PRIMARY KEY,
    stock_code varchar(10) NOT NULL,
    stac_yymm varchar(6) NOT NULL,
    div_cls_code varchar(1) NOT NULL DEFAULT '0',
    grs double precision,
    bsop_prfi_inrt double precision,
    ntin_inrt double precision,
    roe_val double precision,
    eps double precision,
    bps double precision,
    lblt_rate double precision,
    rsrv_rate double precision,
    created_at timestamp NOT NULL DEFAULT now(),
    updated_at timestamp NOT NULL DEFAULT now(),
    CONSTRAINT uq_financial_ratios UNIQUE (stock_code, stac_yymm, div_cls_code),
    CONSTRAINT fk_financial_stock FOREIGN KEY (stock_code)
        REFERENCES stocks (code) ON DELETE CASCADE,
    CONSTRAINT ck_financial_ratios_div_cls_code CHECK (div_cls_code IN ('0', '1')),
    CONSTRAINT ck_financial_ratios_stac_yymm CHECK (stac_yymm ~ '^[0-9]{4}(0[1-9]|1[0-2])$')
);
CREATE INDEX idx_financial_ratios_stock_code ON financial_ratios (stock_code);
CREATE INDEX idx_financial_ratios_stock_stac ON financial_ratios (stock_code, stac_yymm DESC);
COMMENT ON TABLE financial_ratios IS
    'KIS API financial ratios per stock; div_cls_code 0 = yearly, 1 = quarterly (US-001)';
CREATE FUNCTION update_financial_ratios_updated_at() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER trigger_financial_ratios_updated_at
    BEFORE UPDATE ON financial_ratios
    FOR EACH ROW EXECUTE FUNCTION update_financial_ratios_updated_at();
"""),
)

DOWNGRADE = (
    Ddl("""
DROP TABLE financial_ratios;
DROP FUNCTION update_financial_ratios_updated_at();
"""),
)

upgrade, downgrade = entry_points(__name__)

if __name__ == "__main__":
    main()
