"""Migration 4 (test-only): the listing market of a product, and the application keeps
financial_ratios.stock_code itself (its foreign key dropped, the column says so)."""

from migrations.steps import Ddl, entry_points, main

UPGRADE = (
    Ddl("""
ALTER TABLE product_info ADD COLUMN listing_market varchar(20);
ALTER TABLE financial_ratios DROP CONSTRAINT fk_financial_stock;
COMMENT ON COLUMN financial_ratios.stock_code IS 'stocks.code, kept by the application (no foreign key)';
"""),
)

DOWNGRADE = (
    Ddl("""
COMMENT ON COLUMN financial_ratios.stock_code IS NULL;
ALTER TABLE financial_ratios ADD CONSTRAINT fk_financial_stock FOREIGN KEY (stock_code)
    REFERENCES stocks (code) ON DELETE CASCADE;
ALTER TABLE product_info DROP COLUMN listing_market;
"""),
)

upgrade, downgrade = entry_points(__name__)

if __name__ == "__main__":
    main()
