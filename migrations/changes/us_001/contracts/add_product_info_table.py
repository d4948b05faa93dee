"""Contract of migration 1: `product_info`, its sequence and its updated_at trigger function."""

from migrations.contract import Contract, function, serial, table

FK_TO_STOCKS = "FOREIGN KEY (stock_code) REFERENCES public.stocks(code) ON DELETE CASCADE"

ID, ID_SEQUENCE = serial("product_info")

CONTRACT = Contract(
    adds={
        **table(
            "product_info",
            columns={
                "id": ID,
                "stock_code": "character varying(10) not null",
                "prdt_name": "character varying(120) null",
                "prdt_clsf_name": "character varying(100) null",
                "ivst_prdt_type_cd_name": "character varying(100) null",
                "prdt_risk_grad_cd": "character varying(10) null",
                "frst_erlm_dt": "character varying(8) null",
                "created_at": "timestamp without time zone not null default now()",
                "updated_at": "timestamp without time zone not null default now()",
            },
            comment="KIS API product basic info: one row per stock (US-001)",
            primary_key="PRIMARY KEY (id)",
            constraints={
                "uq_product_info_stock_code": "UNIQUE (stock_code)",
                "fk_product_stock": FK_TO_STOCKS,
            },
            indexes={"idx_product_info_stock_code": "USING btree (stock_code)"},
            triggers={
                "trigger_product_info_updated_at": "BEFORE UPDATE FOR EACH ROW"
                " EXECUTE FUNCTION public.update_product_info_updated_at()"
            },
        ),
        **ID_SEQUENCE,
        **function(
            "update_product_info_updated_at()",
            returns="trigger",
            language="plpgsql",
            body="BEGIN NEW.updated_at := now(); RETURN NEW; END",
        ),
    }
)
