"""Contract of migration 2: `financial_ratios`, its sequence and its updated_at trigger function."""

from migrations.contract import Contract, function, serial, table

FK_TO_STOCKS = "FOREIGN KEY (stock_code) REFERENCES public.stocks(code) ON DELETE CASCADE"

ID, ID_SEQUENCE = serial("financial_ratios")
RATIOS = ("grs", "bsop_prfi_inrt", "ntin_inrt", "roe_val", "eps", "bps", "lblt_rate", "rsrv_rate")

CONTRACT = Contract(
    adds={
        **table(
            "financial_ratios",
            columns={
                "id": ID,
                "stock_code": "character varying(10) not null",
                "stac_yymm": "character varying(6) not null",
                "div_cls_code": "character varying(1) not null default '0'::character varying",
                **dict.fromkeys(RATIOS, "double precision null"),
                "created_at": "timestamp without time zone not null default now()",
                "updated_at": "timestamp without time zone not null default now()",
            },
            comment="KIS API financial ratios per stock; div_cls_code 0 = yearly, 1 = quarterly (US-001)",
            primary_key="PRIMARY KEY (id)",
            constraints={
                "uq_financial_ratios": "UNIQUE (stock_code, stac_yymm, div_cls_code)",
                "fk_financial_stock": FK_TO_STOCKS,
                "ck_financial_ratios_div_cls_code": "CHECK (((div_cls_code)::text = ANY "
                "((ARRAY['0'::character varying, '1'::character varying])::text[])))",
                "ck_financial_ratios_stac_yymm": "CHECK (((stac_yymm)::text"
                " ~ '^[0-9]{4}(0[1-9]|1[0-2])$'::text))",
            },
            indexes={
                "idx_financial_ratios_stock_code": "USING btree (stock_code)",
                "idx_financial_ratios_stock_stac": "USING btree (stock_code, stac_yymm DESC)",
            },
            triggers={
                "trigger_financial_ratios_updated_at": "BEFORE UPDATE FOR EACH ROW"
                " EXECUTE FUNCTION public.update_financial_ratios_updated_at()"
            },
        ),
        **ID_SEQUENCE,
        **function(
            "update_financial_ratios_updated_at()",
            returns="trigger",
            language="plpgsql",
            body="BEGIN NEW.updated_at := now(); RETURN NEW; END",
        ),
    }
)
