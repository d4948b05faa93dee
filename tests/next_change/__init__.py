"""A throwaway next change, kept under tests/: the kit must carry it without any edit of US-001.

Enabled by AZAK_EXTRA_MIGRATIONS=tests.next_change.add_product_info_listing (tests only).
"""
