"""Contract of this test-only migration."""

from migrations.catalog import Key
from migrations.contract import Contract, serial, table

ID, ID_SEQUENCE = serial("product_listing")

CONTRACT = Contract(
    adds={
        **table(
            "product_listing",
            columns={
                "id": ID,
                "product_id": "integer not null",
                "market": "character varying(20) not null",
            },
            primary_key="PRIMARY KEY (id)",
            constraints={
                "product_listing_product_id_fkey": "FOREIGN KEY (product_id) REFERENCES"
                " public.product_info(id) ON DELETE CASCADE"
            },
            indexes={"idx_product_listing_product": "USING btree (product_id)"},
        ),
        **ID_SEQUENCE,
    },
    changes={Key("column", "product_info", "prdt_name"): "character varying(200) null"},
)
