"""Contract of the test-only migration 4, written from its description, not from its SQL."""

from migrations.contract import Contract, Key

CONTRACT = Contract(
    adds={
        Key("column", "product_info", "listing_market"): "character varying(20) null",
        Key("comment", "financial_ratios", "stock_code"): "stocks.code, kept by the application"
        " (no foreign key)",
    },
    removes=(Key("constraint", "financial_ratios", "fk_financial_stock"),),
)
