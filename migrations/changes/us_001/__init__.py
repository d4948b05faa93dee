"""US-001: `product_info` and `financial_ratios` added, `stocks.priority` deprecated (all 1).

The contract is docs/US-001-schema.md; the runbook docs/runbook-US-001.ko.txt.
"""

TITLE = "US-001"
MIGRATIONS = ("add_product_info_table", "add_financial_ratios_table", "deprecate_priority_column")

# Checksums earlier versions of the kit recorded: a ledger written by one is read as applied,
# not as changed. The first version hashed whole files; its migration 3 differs in substance
# only in schema-qualifying its trigger function's backup table (and reaching an empty stock
# code): verification names that function's body as a difference. The second (cfbdc31f...)
# had the same upgrade and ends; its downgrade dropped the trigger first (today's keeps the
# application's writes during the rollback, and finishes what that one started).
LEGACY_CHECKSUMS = {
    "add_product_info_table": ("566f1795ccc0353c7d64dcb39567501f48aa0cf3b96dd48008ca27fbd3c41015",),
    "add_financial_ratios_table": ("0305ed3b914451ad847956da01c8a14ce359101b8bb19dd54fec75f40eabf76c",),
    "deprecate_priority_column": (
        "4e4133d8d141da5dc3051c34ace0597d2785b095c7c713506c1cd9a944e37a66",
        "cfbdc31fb922385f3306537eabb7e6c2b3251ee77d25d31cbb7ee57e4ecb854a",
    ),
}
