"""The databases under verification: connected once before any check, admitted (the
application's, its ledger in the kit's registry, a --before file of it), each with its row in
the database's history; --app-models imported once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from migrations import application, history, image, registry
from migrations.dburl import URL, DeployError, UsageError, describe, mask, resolve, scrub
from migrations.steps import load_all, rewrites
from verification.db import Target
from verification.options import LEDGER_HEAD, chosen, given_urls
from verification.state import State, target_name

TARGETS = pytest.StashKey[dict[str, Target]]()  # by masked URL, in the order given
BEFORE = pytest.StashKey[image.BeforeImage]()  # --before FILE, read once
APP_MODELS = pytest.StashKey[Any]()  # --app-models, imported once (verification.models.Models)


def connect(config: pytest.Config) -> dict[str, Target]:
    """Every database given, connected once and admitted (--before read first); a bad input or an
    unreachable database is one usage line, its sessions closed."""
    targets: dict[str, Target] = {}
    try:
        given = config.getoption("--before")
        if given and given != "none":  # a bad file is the operator's input: one line, no checks run
            config.stash[BEFORE] = image.load(Path(given))
        for text in given_urls(config):
            target = Target(
                resolve(text), config.getoption("--lock-timeout"), config.getoption("--statement-timeout")
            )
            if mask(target.url) in targets:
                continue
            targets[mask(target.url)] = target
            target.connect()
            target.blind = target.blind_spot()  # one check fails naming it; the others say why not
            admissible(target, config.stash.get(BEFORE, None))
        load_app_models(config, [t.url for t in targets.values()])
    except (UsageError, DeployError, OSError) as exc:
        for target in targets.values():
            target.close()
        raise pytest.UsageError(str(exc)) from None
    config.stash[TARGETS] = targets
    if target_name(config) == "ledger":
        config.stash[LEDGER_HEAD] = ledger_head(list(targets.values()))
    return targets


def expected(config: pytest.Config, target: Target) -> State:
    """The state the database should be in: before-image + the contracts up to the target. The
    image is the one of the deployment the registry records (or --before FILE's)."""
    chain, name = load_all(), chosen(config)
    explicit = config.getoption("--before")
    if explicit == "none":
        return State.at(
            chain, name, None, "--before none: only what the migrations declare is judged", waived=True
        )
    owners = {str(rw): m.name for rw, m in rewrites(chain).items()}
    if explicit:
        before: image.BeforeImage | None = config.stash[BEFORE]
        return State.at(chain, name, before, "", dict.fromkeys(owners, before))
    try:
        with target.conn.cursor() as cur:
            before, kept, why = registry.yardstick(cur)
    except psycopg2.Error as exc:
        before, kept = None, {}
        why = (
            f"this role may not read the kit's registry ({describe(exc)}): grant it USAGE on schema"
            f" {registry.SCHEMA} and SELECT on its tables"
        )
    finally:
        target.conn.rollback()
    if why:
        why += (
            "; pass --before FILE (`python -m migrations image` writes one before a deployment the kit does"
            " not make), or --before none to judge only what the migrations declare"
        )
    return State.at(chain, name, before, why, {rw: kept.get(owner) for rw, owner in owners.items()})


def load_app_models(config: pytest.Config, urls: list[URL]) -> None:
    """--app-models: the application's models, imported before any check (a module that cannot
    be imported, or holds no models, is one usage line, without the passwords the application's
    own error may quote); SQLAlchemy only then."""
    spec, path = config.getoption("--app-models"), config.getoption("--app-path")
    if path and not spec:
        raise UsageError("--app-path is where --app-models is imported from: give --app-models too")
    if spec:
        from verification import models

        try:
            config.stash[APP_MODELS] = models.load(spec, path)
        except UsageError as exc:
            line = str(exc)
            for secret in [*urls, os.environ.get("DATABASE_URL")]:
                line = scrub(line, secret)
            raise UsageError(line) from None


# Checks that read nothing of schema public: they run whatever the role may see there.


def admissible(target: Target, before: image.BeforeImage | None) -> None:
    """The application's database (unless the role cannot see public: one check fails naming
    it), its ledger in the kit's registry, and a --before file of it (never of another
    database); else one line."""
    if not target.blind and not target.value(application.EXISTS_SQL):
        raise application.not_application(target.url)
    if target.legacy_ledger():
        raise UsageError(
            f"{mask(target.url)} keeps the ledger of an earlier kit (public.schema_migrations): run"
            " `python -m migrations adopt` once where that kit ran upgrade (its before-image comes along),"
            " then verify"
        )
    if before is not None:
        identity = target.identity()
        if (before.identity or before.database) not in (identity, identity.split(" on server ")[0]):
            raise UsageError(
                f"--before {before.path} is an image of {before.identity or before.database},"
                f" not of {identity}: it cannot be this database's yardstick"
            )


def start_history(
    config: pytest.Config, targets: dict[str, Target], executor: str
) -> dict[str, history.Action]:
    """This run's row in each database's history (where the registry is and the role may write
    it); the environment the databases remember, when --env-name is not given."""
    given = config.getoption("--env-name")
    if hasattr(config, "workerinput"):  # xdist: the controller keeps the history and the record
        config.option.env_name = given or history.UNSPECIFIED
        return {}
    actions = {}
    for name, target in targets.items():
        actions[name] = history.Action(target.url, "verify", target_name(config), given, executor)
        actions[name].start(create=False)  # verification never makes the registry
    remembered = [a.environment for a in actions.values() if a.environment != history.UNSPECIFIED]
    config.option.env_name = given or (remembered[0] if remembered else history.UNSPECIFIED)
    return actions


def ledger_head(targets: list[Target]) -> str:
    """`--to ledger`: the state the ledger records, the same on every database given; an
    interrupted migration (applying / reverting) is not a state to verify."""
    names, heads = [m.name for m in load_all()], set()
    for target in targets:
        if target.blind:  # its checks are not run: test_access names why
            continue
        rows = target.ledger() or {}
        unfinished = [f"{n} ({s})" for n, s in rows.items() if s != "applied"]
        if unfinished:
            raise pytest.UsageError(
                f"--to ledger: {mask(target.url)} has {', '.join(unfinished)}: finish it first"
            )
        applied = [n for n in names if n in rows]
        heads.add(applied[-1] if applied else "base")
    if len(heads) > 1:
        raise pytest.UsageError(f"--to ledger: the databases' ledgers differ ({', '.join(sorted(heads))})")
    return heads.pop() if heads else "base"
