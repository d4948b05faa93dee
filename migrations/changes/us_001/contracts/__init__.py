"""One contract per migration, named as the migration: what it does to the catalog.

Written by hand from the schema contract (docs/US-001-schema.md), never from the
migrations' SQL; `tests/test_round_trip.py` proves each migration does exactly this.
"""
