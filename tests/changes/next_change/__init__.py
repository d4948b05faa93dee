"""A throwaway next change: a new table, and a US-001 foreign key replaced by a reference the
application keeps (the shape of the application team's own next steps).

Added exactly as the README's "Adding a change" says; `make test` runs its PostgreSQL 13 leg
with it at the head: the kit's generic tests cover it, US-001's own tests still verify US-001.
"""

TITLE = "NEXT (test)"
AFTER = "deprecate_priority_column"
MIGRATIONS = ("add_stock_news_table", "drop_financial_stock_key")
