"""A test-only change that rewrites data of a US-001 table (as US-001 rewrites priorities)."""

TITLE = "PRODUCT-NAMES (test)"
AFTER = "deprecate_priority_column"
MIGRATIONS = ("normalise_product_names",)
