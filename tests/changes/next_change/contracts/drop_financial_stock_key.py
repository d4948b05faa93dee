"""Contract: the foreign key of financial_ratios.stock_code gone, the column saying why."""

from migrations.contract import Contract, Key

CONTRACT = Contract(
    adds={
        Key("comment", "financial_ratios", "stock_code"): "stocks.code, kept by the application"
        " (no foreign key)",
    },
    removes=(Key("constraint", "financial_ratios", "fk_financial_stock"),),
)
