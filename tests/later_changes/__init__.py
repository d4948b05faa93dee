"""A second review's fifth migration, kept under tests/: a data rewrite of a US-001 table.

Enabled by AZAK_EXTRA_MIGRATIONS=tests.later_changes.normalise_product_names (tests only).
"""
