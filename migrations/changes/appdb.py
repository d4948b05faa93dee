"""The application's database before US-001, for rehearsals, tests and benchmarks.

`stocks` exactly as production has it (contract: "Before US-001"), the tables that
reference it, and realistic rows: six-digit KRX codes, priorities 1..5.
"""

from __future__ import annotations

from psycopg2.extensions import cursor as Cursor

SCHEMA = """
CREATE TABLE stocks (
    id serial NOT NULL,
    code varchar(10) NOT NULL,
    name varchar(100) NOT NULL,
    priority integer NOT NULL,
    is_active boolean NOT NULL,
    created_at timestamp NOT NULL,
    updated_at timestamp NOT NULL,
    market_cap bigint,
    sector varchar(100),
    per double precision,
    pbr double precision,
    CONSTRAINT stocks_pkey PRIMARY KEY (id)
);
CREATE UNIQUE INDEX ix_stocks_code ON stocks (code);
COMMENT ON TABLE stocks IS '종목 마스터';
COMMENT ON COLUMN stocks.id IS 'ID';
COMMENT ON COLUMN stocks.code IS '종목 코드 (KRX 6자리)';
COMMENT ON COLUMN stocks.name IS '종목명';
COMMENT ON COLUMN stocks.priority IS '크롤링 우선순위 (1~5, 낮을수록 우선)';
COMMENT ON COLUMN stocks.is_active IS '활성 여부';
COMMENT ON COLUMN stocks.created_at IS '생성 시각';
COMMENT ON COLUMN stocks.updated_at IS '수정 시각';
COMMENT ON COLUMN stocks.market_cap IS '시가총액';
COMMENT ON COLUMN stocks.sector IS '업종';
COMMENT ON COLUMN stocks.per IS 'PER';
COMMENT ON COLUMN stocks.pbr IS 'PBR';

CREATE TABLE stock_prices_minute (
    id bigserial PRIMARY KEY,
    stock_code varchar(10) NOT NULL REFERENCES stocks (code),
    ts timestamp NOT NULL,
    price integer NOT NULL,
    volume bigint NOT NULL
);
CREATE TABLE stock_overtime_price (
    id bigserial PRIMARY KEY,
    stock_code varchar(10) NOT NULL REFERENCES stocks (code),
    trade_date date NOT NULL,
    price integer NOT NULL
);
"""

FAMOUS = (
    ("005930", "삼성전자", "전기전자"),
    ("000660", "SK하이닉스", "전기전자"),
    ("373220", "LG에너지솔루션", "전기전자"),
    ("207940", "삼성바이오로직스", "의약품"),
    ("005380", "현대차", "운수장비"),
    ("035420", "NAVER", "서비스업"),
    ("035720", "카카오", "서비스업"),
    ("051910", "LG화학", "화학"),
)

# Rows 1..len(FAMOUS) are real names; the rest get distinct codes 100001 + 7g (six digits up to g = 128,571).
INSERT = """
INSERT INTO stocks (code, name, priority, is_active, created_at, updated_at,
                    market_cap, sector, per, pbr)
SELECT coalesce(f.code, (100001 + g * 7)::text),
       coalesce(f.name, '종목' || g),
       1 + (g::bigint * 7919) %% 5,
       g %% 17 <> 0,
       timestamp '2024-01-02 09:00' + g * interval '1 minute',
       timestamp '2025-11-01 18:00' - g * interval '1 second',
       CASE WHEN g %% 11 = 0 THEN NULL ELSE 1000000000::bigint * (1 + g %% 500) END,
       coalesce(f.sector, (ARRAY['금융업', '화학', '유통업', '건설업', NULL])[1 + g %% 5]),
       CASE WHEN g %% 13 = 0 THEN NULL ELSE round((5 + (g %% 300) / 10.0)::numeric, 2) END,
       round((0.3 + (g %% 40) / 10.0)::numeric, 2)
FROM generate_series(%(first)s, %(last)s) g
LEFT JOIN (SELECT row_number() OVER () AS n, * FROM unnest(%(codes)s::text[], %(names)s::text[],
           %(sectors)s::text[]) AS t(code, name, sector)) f ON f.n = g;
"""

CHILD_ROWS = """
INSERT INTO stock_prices_minute (stock_code, ts, price, volume)
SELECT code, timestamp '2025-11-14 09:00' + m * interval '1 minute', 50000 + m, 100 * m
FROM (SELECT code FROM stocks ORDER BY code LIMIT 20) s, generate_series(1, 5) m;
INSERT INTO stock_overtime_price (stock_code, trade_date, price)
SELECT code, date '2025-11-14', 51000 FROM (SELECT code FROM stocks ORDER BY code LIMIT 20) s;
"""


def create(cur: Cursor, stocks: int = 3000) -> None:
    """Create the application's tables and fill them with `stocks` realistic rows."""
    cur.execute(SCHEMA)
    add_stocks(cur, stocks)
    cur.execute(CHILD_ROWS)
    cur.execute("ANALYZE")


def add_stocks(cur: Cursor, count: int, first: int = 1) -> None:
    """Insert `count` stocks numbered from `first` (rows 1..8 are famous KRX names)."""
    if count <= 0:
        return
    codes, names, sectors = (list(col) for col in zip(*FAMOUS, strict=True))
    cur.execute(
        INSERT,
        {"first": first, "last": first + count - 1, "codes": codes, "names": names, "sectors": sectors},
    )
