"""A test-only change that changes an earlier table's column and hangs a table off it."""

TITLE = "PRODUCT-LISTING (test)"
AFTER = "normalise_product_names"
MIGRATIONS = ("widen_and_list",)
