"""Contract of migration 3: `stocks.priority` pinned to 1, its old values kept for the rollback."""

import json
from collections.abc import Mapping

from migrations.catalog import Key
from migrations.contract import ANY, Contract, Rewrite, function, table

PRIORITY, PRIORITY_COMMENT = Key("column", "stocks", "priority"), Key("comment", "stocks", "priority")


def saved_for_rollback(before: Mapping[Key, str | None]) -> str:
    """The backup table's comment: stocks.priority's default and comment before the upgrade,
    as json_build_object writes them (the rollback puts them back from there)."""
    column = before.get(PRIORITY)
    if column is None:
        return ANY
    default = column.partition(" default ")[2] or None
    text = lambda value: json.dumps(value, ensure_ascii=False)  # noqa: E731
    return f'{{"default" : {text(default)}, "comment" : {text(before.get(PRIORITY_COMMENT))}}}'


CONTRACT = Contract(
    adds={
        **table(
            "stocks_priority_backup",
            columns={
                "code": "character varying(10) not null",
                "priority": "integer null",
                "saved_at": "timestamp without time zone not null default now()",
            },
            # the column's previous default and comment, as JSON, for the rollback
            comment=saved_for_rollback,
            primary_key="PRIMARY KEY (code)",
        ),
        Key("trigger", "stocks", "trigger_stocks_priority_deprecated"): "BEFORE INSERT OR UPDATE OF priority"
        " FOR EACH ROW EXECUTE FUNCTION public.stocks_priority_deprecated()",
        **function(
            "stocks_priority_deprecated()",
            returns="trigger",
            language="plpgsql",
            body="""
BEGIN
    -- The application's write reaching a row before its batch does: keep the old value for
    -- the rollback. (The batches save their rows in bulk themselves, and say so.)
    IF TG_OP = 'UPDATE' AND OLD.priority IS DISTINCT FROM 1
       AND current_setting('azak.priority_batch', true) IS DISTINCT FROM 'on' THEN
        INSERT INTO public.stocks_priority_backup (code, priority) VALUES (OLD.code, OLD.priority)
        ON CONFLICT (code) DO NOTHING;
    END IF;
    NEW.priority := 1;
    RETURN NEW;
END""",
        ),
    },
    changes={
        PRIORITY: "integer not null default 1",
        PRIORITY_COMMENT: "DEPRECATED (US-001): always 1, kept for API compatibility;"
        " was 크롤링 우선순위 (1~5)",
    },
    rewrites=(Rewrite("stocks", "code", "priority", writes="1"),),
    data=(Key("comment", "stocks_priority_backup"),),  # the downgrade restores from it
)
