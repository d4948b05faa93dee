"""Databases for the benchmarks: large templates made once, copies dropped at the end."""

from __future__ import annotations

import time
from typing import Any

from psycopg2 import sql

from migrations.changes import appdb
from migrations.dburl import connect, dbname, fetch, parse, run_outside_transaction

RATIOS = """
INSERT INTO financial_ratios (stock_code, stac_yymm, div_cls_code, grs, roe_val, eps)
SELECT s.code, p.yymm, p.cls, 1.5, 7.25, 1200
FROM stocks s, (VALUES ('202312', '0'), ('202406', '1'), ('202409', '1')) AS p(yymm, cls)
WHERE p.yymm IS NOT NULL
LIMIT %(limit)s
"""


class Server:
    """The server the benchmarks run on (a URL of a database to connect to for admin)."""

    def __init__(self, url: str) -> None:
        self.admin_url = parse(url)
        self.made: list[str] = []

    def url(self, name: str) -> str:
        return self.admin_url.set(database=name).render_as_string(hide_password=False)

    def admin(self, statement: sql.Composable) -> None:
        run_outside_transaction(self.admin_url, statement)

    def execute(self, url: str, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        return fetch(parse(url), statement, params)

    def version(self) -> str:
        return "PostgreSQL " + str(
            self.execute(self.url(dbname(self.admin_url)), "SHOW server_version")[0][0]
        )

    def template(self, name: str, stocks: int) -> str:
        """A database with the application's tables and `stocks` rows (made once per run)."""
        self.admin(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        self.admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.made.append(name)
        conn = connect(parse(self.url(name)))
        try:
            with conn, conn.cursor() as cur:
                appdb.create(cur, stocks)
        finally:
            conn.close()
        return self.url(name)

    def copy(self, template_url: str, name: str) -> str:
        """A copy of a template database."""
        template = dbname(parse(template_url))
        self.admin(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        self.admin(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
        )
        self.made.append(name)
        return self.url(name)

    def drop(self, url: str) -> None:
        name = dbname(parse(url))
        self.admin(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))

    def drop_all(self) -> None:
        for name in self.made:
            self.admin(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))

    def add_ratios(self, url: str, per_stock: int) -> None:
        """`per_stock` financial_ratios rows for every stock (the table must exist)."""
        count = self.execute(url, "SELECT count(*) FROM stocks")[0][0]
        self.execute(url, RATIOS, {"limit": count * per_stock})
        self.execute(url, "ANALYZE financial_ratios")

    def clone_seconds(self, stocks: int = 300, repeat: int = 5) -> float:
        """Best time to make a throwaway database from a template of the tests' size."""
        template = dbname(parse(self.template("bench_clone_template", stocks)))
        best = float("inf")
        for i in range(repeat):
            name = f"bench_clone_{i}"
            started = time.monotonic()
            self.admin(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
            best = min(best, time.monotonic() - started)
            self.made.append(name)
        return best
