"""Migration (test-only): `stock_news`, news headlines per stock code the application keeps."""

from migrations.runbook import entry_points, main
from migrations.steps import Ddl

UPGRADE = (
    Ddl("""
CREATE TABLE stock_news (
    id serial PRIMARY KEY,
    stock_code varchar(10) NOT NULL,
    headline varchar(200) NOT NULL,
    published_at timestamp NOT NULL
);
CREATE INDEX idx_stock_news_stock_published ON stock_news (stock_code, published_at DESC);
COMMENT ON TABLE stock_news IS 'news headlines per stock; stock_code kept by the application';
"""),
)

DOWNGRADE = (Ddl("DROP TABLE stock_news;"),)

upgrade, downgrade = entry_points(__name__)

if __name__ == "__main__":
    main()
