"""Migration (test-only): product names widened, and a listing table hanging off product_info."""

from migrations.runbook import entry_points, main
from migrations.steps import Ddl

UPGRADE = (
    Ddl("""
ALTER TABLE product_info ALTER COLUMN prdt_name TYPE varchar(200);
CREATE TABLE product_listing (
    id serial PRIMARY KEY,
    product_id integer NOT NULL REFERENCES product_info (id) ON DELETE CASCADE,
    market varchar(20) NOT NULL
);
CREATE INDEX idx_product_listing_product ON product_listing (product_id);
"""),
)

DOWNGRADE = (
    Ddl("""
DROP TABLE product_listing;
ALTER TABLE product_info ALTER COLUMN prdt_name TYPE varchar(120);
"""),
)

upgrade, downgrade = entry_points(__name__)

if __name__ == "__main__":
    main()
