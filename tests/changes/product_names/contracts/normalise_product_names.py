"""Contract of this test-only migration: a saved copy of the product names it rewrites."""

from migrations.contract import Contract, Rewrite, table

CONTRACT = Contract(
    adds=table(
        "product_name_backup",
        columns={"id": "integer not null", "prdt_name": "character varying(120) null"},
        primary_key="PRIMARY KEY (id)",
    ),
    # The vocabulary wants ONE value the migration writes; a normalisation writes a value per
    # row. The nearest honest declaration: rows whose name is not empty are the changed ones.
    rewrites=(Rewrite("product_info", "id", "prdt_name", writes=""),),
)
