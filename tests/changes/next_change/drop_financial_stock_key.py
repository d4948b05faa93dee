"""Migration (test-only): financial_ratios.stock_code kept by the application, its foreign
key to stocks dropped (the column's comment says so); the rollback puts the key back, validated."""

from migrations.runbook import entry_points, main
from migrations.steps import Ddl

UPGRADE = (
    Ddl("""
-- squawk-ignore ban-drop-constraint
ALTER TABLE financial_ratios DROP CONSTRAINT fk_financial_stock;
COMMENT ON COLUMN financial_ratios.stock_code IS 'stocks.code, kept by the application (no foreign key)';
"""),
)

DOWNGRADE = (
    Ddl("""
COMMENT ON COLUMN financial_ratios.stock_code IS NULL;
ALTER TABLE financial_ratios ADD CONSTRAINT fk_financial_stock FOREIGN KEY (stock_code)
    REFERENCES stocks (code) ON DELETE CASCADE;
"""),
)

upgrade, downgrade = entry_points(__name__)

if __name__ == "__main__":
    main()
