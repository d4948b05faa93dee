"""The US-001 contract (shared/spec/US-001-schema.md) as data, written independently.

Nothing here is imported from `migrations/`: a bug in a migration must not become the
yardstick it is measured with. Types are written as SQLAlchemy's PostgreSQL dialect
prints them; defaults as PostgreSQL prints them (`pg_get_expr`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    """A column: type, nullability and server default (None: no default)."""

    name: str
    type: str
    nullable: bool
    default: str | None = None


@dataclass(frozen=True)
class Index:
    """A plain index: its columns in order, and those sorted DESC."""

    name: str
    columns: tuple[str, ...]
    desc: tuple[str, ...] = ()


@dataclass(frozen=True)
class ForeignKey:
    """A foreign key: columns, target, ON DELETE action; always validated."""

    name: str
    columns: tuple[str, ...]
    target_table: str
    target_columns: tuple[str, ...]
    on_delete: str


@dataclass(frozen=True)
class Check:
    """A CHECK constraint and the columns it reads (its meaning is proved by probes)."""

    name: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Trigger:
    """A row trigger: timing, events (with UPDATE OF columns) and the function it calls."""

    name: str
    table: str
    timing: str
    events: tuple[str, ...]
    function: str
    update_of: tuple[str, ...] = ()


@dataclass(frozen=True)
class Table:
    """A table US-001 creates."""

    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    unique: dict[str, tuple[str, ...]]
    foreign_keys: tuple[ForeignKey, ...]
    indexes: tuple[Index, ...]
    checks: tuple[Check, ...] = ()
    trigger: Trigger | None = None
    has_comment: bool = True


def _audit_columns() -> tuple[Column, ...]:
    return (
        Column("created_at", "TIMESTAMP WITHOUT TIME ZONE", False, "now()"),
        Column("updated_at", "TIMESTAMP WITHOUT TIME ZONE", False, "now()"),
    )


def _serial(table: str) -> Column:
    return Column("id", "INTEGER", False, f"nextval('{table}_id_seq'::regclass)")


def _updated_at_trigger(table: str) -> Trigger:
    return Trigger(f"trigger_{table}_updated_at", table, "BEFORE", ("UPDATE",), f"update_{table}_updated_at")


def _fk_to_stocks(name: str) -> ForeignKey:
    return ForeignKey(name, ("stock_code",), "stocks", ("code",), "CASCADE")


PRODUCT_INFO = Table(
    name="product_info",
    columns=(
        _serial("product_info"),
        Column("stock_code", "VARCHAR(10)", False),
        Column("prdt_name", "VARCHAR(120)", True),
        Column("prdt_clsf_name", "VARCHAR(100)", True),
        Column("ivst_prdt_type_cd_name", "VARCHAR(100)", True),
        Column("prdt_risk_grad_cd", "VARCHAR(10)", True),
        Column("frst_erlm_dt", "VARCHAR(8)", True),
        *_audit_columns(),
    ),
    primary_key=("id",),
    unique={"uq_product_info_stock_code": ("stock_code",)},
    foreign_keys=(_fk_to_stocks("fk_product_stock"),),
    indexes=(Index("idx_product_info_stock_code", ("stock_code",)),),
    trigger=_updated_at_trigger("product_info"),
)

_RATIOS = ("grs", "bsop_prfi_inrt", "ntin_inrt", "roe_val", "eps", "bps", "lblt_rate", "rsrv_rate")

FINANCIAL_RATIOS = Table(
    name="financial_ratios",
    columns=(
        _serial("financial_ratios"),
        Column("stock_code", "VARCHAR(10)", False),
        Column("stac_yymm", "VARCHAR(6)", False),
        Column("div_cls_code", "VARCHAR(1)", False, "'0'::character varying"),
        *(Column(name, "DOUBLE PRECISION", True) for name in _RATIOS),
        *_audit_columns(),
    ),
    primary_key=("id",),
    unique={"uq_financial_ratios": ("stock_code", "stac_yymm", "div_cls_code")},
    foreign_keys=(_fk_to_stocks("fk_financial_stock"),),
    indexes=(
        Index("idx_financial_ratios_stock_code", ("stock_code",)),
        Index("idx_financial_ratios_stock_stac", ("stock_code", "stac_yymm"), desc=("stac_yymm",)),
    ),
    checks=(
        Check("ck_financial_ratios_div_cls_code", ("div_cls_code",)),
        Check("ck_financial_ratios_stac_yymm", ("stac_yymm",)),
    ),
    trigger=_updated_at_trigger("financial_ratios"),
)

NEW_TABLES = (PRODUCT_INFO, FINANCIAL_RATIOS)

PRIORITY_TRIGGER = Trigger(
    "trigger_stocks_priority_deprecated",
    "stocks",
    "BEFORE",
    ("INSERT", "UPDATE"),
    "stocks_priority_deprecated",
    update_of=("priority",),
)
PRIORITY_BACKUP = Table(
    name="stocks_priority_backup",
    columns=(
        Column("code", "VARCHAR(10)", False),
        Column("priority", "INTEGER", True),
        Column("saved_at", "TIMESTAMP WITHOUT TIME ZONE", False, "now()"),
    ),
    primary_key=("code",),
    unique={},
    foreign_keys=(),
    indexes=(),
    has_comment=False,
)

# stocks.priority: before US-001 and after a rollback / after the upgrade.
PRIORITY_COMMENT_BEFORE = "크롤링 우선순위 (1~5, 낮을수록 우선)"
PRIORITY_DEFAULT_BEFORE: str | None = None
PRIORITY_DEFAULT_AFTER = "1"
PRIORITY_COMMENT_PREFIX_AFTER = "DEPRECATED"
PRIORITY_RANGE_BEFORE = (1, 5)

TRIGGERS: tuple[Trigger, ...] = (
    _updated_at_trigger("product_info"),
    _updated_at_trigger("financial_ratios"),
    PRIORITY_TRIGGER,
)
FUNCTIONS = tuple(t.function for t in TRIGGERS)

LEDGER_TABLE = "schema_migrations"
MIGRATIONS = ("add_product_info_table", "add_financial_ratios_table", "deprecate_priority_column")

# Objects that must not exist after a rollback (tables US-001 creates, ledger aside).
US001_TABLES = ("product_info", "financial_ratios", "stocks_priority_backup")
