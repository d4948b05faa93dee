"""Contract: `stock_news`, its sequence and its index."""

from migrations.contract import Contract, serial, table

ID, ID_SEQUENCE = serial("stock_news")

CONTRACT = Contract(
    adds={
        **table(
            "stock_news",
            columns={
                "id": ID,
                "stock_code": "character varying(10) not null",
                "headline": "character varying(200) not null",
                "published_at": "timestamp without time zone not null",
            },
            comment="news headlines per stock; stock_code kept by the application",
            primary_key="PRIMARY KEY (id)",
            indexes={"idx_stock_news_stock_published": "USING btree (stock_code, published_at DESC)"},
        ),
        **ID_SEQUENCE,
    }
)
