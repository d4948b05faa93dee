"""US-001 migrations and the small runtime that applies them.

`python -m migrations --help` lists the commands; each step is also runnable alone,
as the runbook does: `python -m migrations.add_product_info_table [downgrade]`.
"""

ORDER = (
    "add_product_info_table",
    "add_financial_ratios_table",
    "deprecate_priority_column",
)
