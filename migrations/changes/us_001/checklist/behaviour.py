"""US-001's checklist, tested by behaviour (UNIQUE 제약조건 테스트): probes in a rolled-back transaction.

Each probe uses its own stock code and explicit negative ids: it never touches a real row,
never consumes a sequence value, and commits nothing (the `probe` fixture always rolls back).
A probe runs only where the verified state has what it tries (`needs`: the constraint, the
trigger; others are deselected) and only for a role that may write (else skipped, saying why).
"""

import secrets
from collections.abc import Iterator

import psycopg2
import pytest

from migrations.catalog import Key
from migrations.dburl import describe
from verification.behaviour import MAY_REPLICATE
from verification.checklists import Break
from verification.db import Probe, Target, constraint_of, sqlstate

CHECKLIST = "behaviour"

# Who may run the probes: they write (and roll back) on the tables they try.
WRITES = (
    "SELECT bool_and(has_table_privilege(t, 'INSERT, UPDATE, DELETE'))"
    " FROM unnest(ARRAY['public.stocks', 'public.product_info', 'public.financial_ratios']) t"
    " WHERE to_regclass(t) IS NOT NULL"
)
# Trigger functions and the probes that pin down everything they do (verification.behaviour
# judges a function spelled differently by them). The save of an original priority needs a
# session that bypasses the trigger once (replica role).
PROBED = {
    "update_product_info_updated_at()": ("test_update_moves_updated_at_to_now[product_info]",),
    "update_financial_ratios_updated_at()": ("test_update_moves_updated_at_to_now[financial_ratios]",),
    "stocks_priority_deprecated()": (
        "test_new_stock_gets_priority_1",
        "test_priority_update_stays_1",
        "test_a_write_before_its_batch_keeps_the_original",
    ),
}
NEEDS_REPLICA = {"stocks_priority_deprecated()"}


@pytest.fixture(scope="session")
def writes(target: Target) -> bool:
    """Whether this role may write the tables the probes try (asked once)."""
    return bool(target.value(WRITES))


@pytest.fixture
def probe(probe: Probe, writes: bool) -> Iterator[Probe]:
    """Probes write (and roll back): a read-only role gets the catalog's verdict alone."""
    if not writes:
        pytest.skip("the verifying role may not write: behaviour probes not run (the catalog checks stand)")
    yield probe


@pytest.fixture(scope="session")
def probe_code(target: Target) -> str:
    """A stock code no real stock has (probe rows never touch real ones; every probe rolls
    back, so one code serves them all)."""
    for _ in range(5):
        code = "~" + secrets.token_hex(4)[:7]
        if not target.value("SELECT count(*) FROM stocks WHERE code = :c", c=code):
            return code
    raise AssertionError("could not find a free probe stock code")


def add_stock(probe: Probe, code: str, priority: int | None = 5) -> int:
    """A probe stock (explicit id, as the application would send it); returns its id."""
    stock_id = probe.new_id()
    probe.execute(
        "INSERT INTO stocks (id, code, name, priority, is_active, created_at, updated_at)"
        " VALUES (:id, :code, 'verification probe', :priority, false, now(), now())",
        id=stock_id,
        code=code,
        priority=priority,
    )
    return stock_id


def add_product(probe: Probe, code: str, updated_at: str = "2000-01-01") -> int:
    """A product_info probe row for `code`; returns its id."""
    row_id = probe.new_id()
    probe.execute(
        "INSERT INTO product_info (id, stock_code, prdt_name, created_at, updated_at)"
        " VALUES (:id, :code, 'probe', :ts, :ts)",
        id=row_id,
        code=code,
        ts=updated_at,
    )
    return row_id


# INSERT of one financial_ratios probe row (params: id, code, yymm, cls).
RATIO_SQL = (
    "INSERT INTO financial_ratios (id, stock_code, stac_yymm, div_cls_code,"
    " created_at, updated_at) VALUES (:id, :code, :yymm, :cls, '2000-01-01', '2000-01-01')"
)


def add_ratio(probe: Probe, code: str, yymm: str = "202412", cls: str = "0") -> int:
    """A financial_ratios probe row; returns its id."""
    row_id = probe.new_id()
    probe.execute(RATIO_SQL, id=row_id, code=code, yymm=yymm, cls=cls)
    return row_id


UQ_PRODUCT = Key("constraint", "product_info", "uq_product_info_stock_code")
UQ_RATIOS = Key("constraint", "financial_ratios", "uq_financial_ratios")
FK_PRODUCT = Key("constraint", "product_info", "fk_product_stock")
FK_RATIOS = Key("constraint", "financial_ratios", "fk_financial_stock")
CK_MONTH = Key("constraint", "financial_ratios", "ck_financial_ratios_stac_yymm")
CK_CLASS = Key("constraint", "financial_ratios", "ck_financial_ratios_div_cls_code")
PRIORITY_TRIGGER = Key("trigger", "stocks", "trigger_stocks_priority_deprecated")
FKS = {"product_info": FK_PRODUCT, "financial_ratios": FK_RATIOS}
UPDATED_AT = {t: Key("trigger", t, f"trigger_{t}_updated_at") for t in FKS}

UNIQUE_VIOLATION, FK_VIOLATION, CHECK_VIOLATION = "23505", "23503", "23514"
STATES = {
    UNIQUE_VIOLATION: "unique violation",
    FK_VIOLATION: "foreign key violation",
    CHECK_VIOLATION: "check violation",
    None: "accepted",
}


def assert_rejected(error, state: str, constraint: str, what: str) -> None:
    got = (sqlstate(error), constraint_of(error))
    assert got == (state, constraint), (
        f"{what} should be rejected by {constraint} ({STATES[state]}); "
        f"found {STATES.get(got[0], got[0])}{' by ' + got[1] if got[1] else ''}"
    )


@pytest.mark.needs(UQ_PRODUCT)
def test_duplicate_product_info_is_rejected(probe: Probe, probe_code: str) -> None:
    add_stock(probe, probe_code)
    add_product(probe, probe_code)
    error = probe.error_of(
        "INSERT INTO product_info (id, stock_code) VALUES (:id, :code)", id=probe.new_id(), code=probe_code
    )
    assert_rejected(
        error, UNIQUE_VIOLATION, "uq_product_info_stock_code", "a second product_info row of one stock"
    )


@pytest.mark.needs(UQ_RATIOS)
def test_duplicate_financial_ratio_is_rejected(probe: Probe, probe_code: str) -> None:
    add_stock(probe, probe_code)
    add_ratio(probe, probe_code, "202412", "0")
    error = probe.error_of(RATIO_SQL, id=probe.new_id(), code=probe_code, yymm="202412", cls="0")
    assert_rejected(error, UNIQUE_VIOLATION, "uq_financial_ratios", "a second (stock, 202412, yearly) ratio")


@pytest.mark.needs(Key("table", "financial_ratios"))
def test_quarterly_ratio_beside_yearly_is_accepted(probe: Probe, probe_code: str) -> None:
    add_stock(probe, probe_code)
    add_ratio(probe, probe_code, "202412", "0")
    error = probe.error_of(RATIO_SQL, id=probe.new_id(), code=probe_code, yymm="202412", cls="1")
    assert error is None, (
        "a quarterly ratio beside the yearly one of the same month should be accepted "
        f"(UNIQUE is on stock_code, stac_yymm, div_cls_code); found {STATES.get(sqlstate(error))} "
        f"by {constraint_of(error)}"
    )


@pytest.mark.needs(FK_PRODUCT)
def test_product_info_of_unknown_stock_is_rejected(probe: Probe, probe_code: str) -> None:
    error = probe.error_of(
        "INSERT INTO product_info (id, stock_code) VALUES (:id, :code)", id=probe.new_id(), code=probe_code
    )
    assert_rejected(error, FK_VIOLATION, "fk_product_stock", "product_info of a stock not in stocks")


@pytest.mark.needs(FK_RATIOS)
def test_financial_ratio_of_unknown_stock_is_rejected(probe: Probe, probe_code: str) -> None:
    error = probe.error_of(RATIO_SQL, id=probe.new_id(), code=probe_code, yymm="202412", cls="0")
    assert_rejected(error, FK_VIOLATION, "fk_financial_stock", "a ratio of a stock not in stocks")


# Per table, the statement that counts a stock's rows / touches a row (no SQL built from names).
COUNT_ROWS = {
    "product_info": "SELECT count(*) FROM product_info WHERE stock_code = :code",
    "financial_ratios": "SELECT count(*) FROM financial_ratios WHERE stock_code = :code",
}
# An UPDATE that changes nothing but what the trigger does, and sends an updated_at of its own
# (as an ORM's onupdate may; the probe row's is 2000-01-01): the trigger's now() wins, whatever
# the statement says. (updated_at, every other column).
TOUCH_ROW = {
    "product_info": "UPDATE product_info t SET stock_code = stock_code, updated_at = '2001-02-03'"
    " WHERE id = :id RETURNING updated_at::text, to_jsonb(t) - 'updated_at'",
    "financial_ratios": "UPDATE financial_ratios t SET stock_code = stock_code, updated_at = '2001-02-03'"
    " WHERE id = :id RETURNING updated_at::text, to_jsonb(t) - 'updated_at'",
}
ROW_NOW = {
    "product_info": "SELECT to_jsonb(t) - 'updated_at' FROM product_info t WHERE id = :id",
    "financial_ratios": "SELECT to_jsonb(t) - 'updated_at' FROM financial_ratios t WHERE id = :id",
}


@pytest.mark.parametrize("table", [pytest.param(t, marks=pytest.mark.needs(FKS[t])) for t in COUNT_ROWS])
def test_deleting_a_stock_cascades(probe: Probe, probe_code: str, table: str) -> None:
    stock_id = add_stock(probe, probe_code)
    add_product(probe, probe_code) if table == "product_info" else add_ratio(probe, probe_code)
    error = probe.error_of("DELETE FROM stocks WHERE id = :id", id=stock_id)
    assert error is None, (
        f"deleting a stock should cascade; it failed: {sqlstate(error)} {constraint_of(error)}"
    )
    probe.execute("DELETE FROM stocks WHERE id = :id", id=stock_id)
    (left,) = probe.execute(COUNT_ROWS[table], code=probe_code)[0]
    assert left == 0, f"deleting a stock should delete its {table} rows (ON DELETE CASCADE); {left} left"


BAD_MONTHS = ("202413", "202400", "2024-1", "abcdef", "20241")
GOOD_MONTHS = ("202401", "202412", "199910")
BAD_CLASSES = ("2", "Q", " ")
PRIORITIES_SENT = (5, 3, 0, -1, None)  # the application's 5, any other, and out of range


def ratio_error(probe: Probe, code: str, yymm: str, cls: str) -> psycopg2.Error | None:
    return probe.error_of(RATIO_SQL, id=probe.new_id(), code=code, yymm=yymm, cls=cls)


@pytest.mark.needs(CK_MONTH)
def test_check_rejects_bad_months(probe: Probe, probe_code: str) -> None:
    add_stock(probe, probe_code)
    for yymm in BAD_MONTHS:
        error = ratio_error(probe, probe_code, yymm, "0")
        assert_rejected(error, CHECK_VIOLATION, "ck_financial_ratios_stac_yymm", f"stac_yymm {yymm!r}")


@pytest.mark.needs(Key("table", "financial_ratios"))
def test_check_accepts_valid_months(probe: Probe, probe_code: str) -> None:
    add_stock(probe, probe_code)
    refused = {yymm: ratio_error(probe, probe_code, yymm, "1") for yymm in GOOD_MONTHS}
    shown = [f"{y!r} ({STATES.get(sqlstate(e))} by {constraint_of(e)})" for y, e in refused.items() if e]
    assert not shown, f"stac_yymm {', '.join(shown)} should be accepted"


@pytest.mark.needs(CK_CLASS)
def test_check_rejects_bad_class_codes(probe: Probe, probe_code: str) -> None:
    add_stock(probe, probe_code)
    for cls in BAD_CLASSES:
        error = ratio_error(probe, probe_code, "202412", cls)
        assert_rejected(error, CHECK_VIOLATION, "ck_financial_ratios_div_cls_code", f"div_cls_code {cls!r}")


@pytest.mark.parametrize(
    "table", [pytest.param(t, marks=pytest.mark.needs(UPDATED_AT[t])) for t in TOUCH_ROW]
)
def test_update_moves_updated_at_to_now(probe: Probe, probe_code: str, table: str) -> None:
    probe.execute("SET LOCAL TimeZone = 'Asia/Seoul'")  # the application's zone: UTC would be 9 h off
    add_stock(probe, probe_code)
    row_id = add_product(probe, probe_code) if table == "product_info" else add_ratio(probe, probe_code)
    (was,) = probe.execute(ROW_NOW[table], id=row_id)[0]
    (updated, rest) = probe.execute(TOUCH_ROW[table], id=row_id)[0]
    (off,) = probe.execute("SELECT extract(epoch FROM CAST(:u AS timestamp) - localtimestamp)", u=updated)[0]
    assert abs(off) < 60, (
        f"an UPDATE of {table} should set updated_at to now (its trigger); it is {updated}, {off:+.0f} s off"  # noqa: S608
    )
    changed = {k: (was.get(k), v) for k, v in rest.items() if was.get(k) != v}
    assert not changed, f"an UPDATE of {table} should change nothing but updated_at; it changed {changed}"


def priorities_after(probe: Probe, write: str, code: str) -> dict[int | None, object]:
    """What each priority sent by `write` became (or the error it met), each in a savepoint."""
    got: dict[int | None, object] = {}
    for sent in PRIORITIES_SENT:
        rows, error = probe.outcome(write, id=probe.new_id(), code=code, p=sent)
        got[sent] = f"error: {describe(error)}" if error else rows[0][0]
    return got


INSERT_STOCK = (
    "INSERT INTO stocks (id, code, name, priority, is_active, created_at, updated_at)"
    " VALUES (:id, :code, 'verification probe', :p, false, now(), now())"
    " RETURNING CASE WHEN name = 'verification probe' AND NOT is_active THEN priority END"
)
UPDATE_PRIORITY = "UPDATE stocks SET priority = :p WHERE code = :code AND id <> :id RETURNING priority"


@pytest.mark.needs(PRIORITY_TRIGGER)
def test_new_stock_gets_priority_1(probe: Probe, probe_code: str) -> None:
    got = priorities_after(probe, INSERT_STOCK, probe_code)
    wrong = {sent: value for sent, value in got.items() if value != 1}
    assert not wrong, "a new stock should get priority 1 whatever it is sent; " + ", ".join(
        f"sent {sent}, found {value}" for sent, value in wrong.items()
    )


@pytest.mark.needs(PRIORITY_TRIGGER)
def test_priority_update_stays_1(probe: Probe, probe_code: str) -> None:
    add_stock(probe, probe_code)
    got = priorities_after(probe, UPDATE_PRIORITY, probe_code)
    wrong = {sent: value for sent, value in got.items() if value != 1}
    assert not wrong, "setting a stock's priority should leave 1; " + ", ".join(
        f"set {sent}, found {value}" for sent, value in wrong.items()
    )


# A stock its batch has not reached: written in a replica session (no ordinary trigger fires).
BEFORE_ITS_BATCH = (
    "SET LOCAL session_replication_role = replica;"
    " INSERT INTO stocks (id, code, name, priority, is_active, created_at, updated_at)"
    " VALUES (:id, :code, 'verification probe', 5, false, now(), now());"
    " SET LOCAL session_replication_role = origin;"
    " SELECT priority FROM stocks WHERE code = :code"
)
# The application's update of it, then its priority and the original saved for the rollback.
UPDATED_AND_SAVED = (
    "UPDATE stocks SET priority = 3 WHERE code = :code;"
    " SELECT s.priority, b.priority FROM stocks s LEFT JOIN stocks_priority_backup b USING (code)"
    " WHERE s.code = :code"
)


@pytest.mark.needs(PRIORITY_TRIGGER, Key("table", "stocks_priority_backup"))
def test_a_write_before_its_batch_keeps_the_original(target: Target, probe: Probe, probe_code: str) -> None:
    """What the rollback restores: a stock the batches have not reached yet (its priority
    still 5, written here in a replica session, which fires no ordinary trigger) that the
    application updates keeps its original in stocks_priority_backup, and becomes 1."""
    if not target.value(MAY_REPLICATE, name="stocks_priority_deprecated"):
        pytest.skip(
            "a stock before its batch needs a replica session its trigger does not fire in (superuser)"
        )
    if probe.execute(BEFORE_ITS_BATCH, id=probe.new_id(), code=probe_code) != [(5,)]:
        pytest.skip("no stock can be placed before its batch: the trigger fires in replica sessions too")
    (now, saved) = probe.execute(UPDATED_AND_SAVED, code=probe_code)[0]
    assert (now, saved) == (1, 5), (
        "an update of a stock its batch has not reached should save its original (5) for the rollback"
        f" and leave 1; found priority {now}, saved {saved if saved is not None else 'nothing'}"
    )


# How to make these checks fail (the kit's tests apply them at the chain's head; the rest of
# US-001's are in tests/test_catches_broken_deployments.py, applied at US-001's head).
BREAKS = [
    Break(
        "updated_at trigger keeps an updated_at the statement sends",
        "CREATE OR REPLACE FUNCTION update_product_info_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN NEW.updated_at := now(); END IF;"
        " RETURN NEW; END $$;",
        ("test_changes::test_update_moves_updated_at_to_now[product_info]",),
        "an UPDATE of product_info should set updated_at to now (its trigger); it is 2001-02-03",
    ),
]
