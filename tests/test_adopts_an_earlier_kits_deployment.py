"""A database deployed by the earlier kit (its ledger in public.schema_migrations, its
before-images as files in data/images of the directory that ran upgrade) moves into the
registry without a redeploy: the next command adopts it, with the local images if found
here, and says so; verification before that is one line saying what to run."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from migrations import image
from migrations.dburl import connect
from migrations.steps import load_all
from tests.conftest import US001_HEAD, Db, ok

REWRITES = [rw for m in load_all() for rw in m.contract.rewrites]
EARLIER_LEDGER = """
CREATE TABLE schema_migrations (
    name text PRIMARY KEY,
    checksum text NOT NULL,
    state text NOT NULL CHECK (state IN ('applying', 'applied', 'reverting')),
    applied_at timestamptz NOT NULL DEFAULT now(),
    applied_by text NOT NULL,
    duration_ms integer
);
COMMENT ON TABLE schema_migrations IS 'US-001 migration ledger (azak-db-migrations)';
INSERT INTO schema_migrations SELECT * FROM azak_registry.ledger;
DROP SCHEMA azak_registry CASCADE;
"""


def keep_file(db: Db, applied: list[str], folder: Path) -> Path:
    """An image file as the earlier kit kept it."""
    conn = connect(db.url)
    try:
        with conn, conn.cursor() as cur:
            kept = image.keep(cur, REWRITES, applied, folder)
    finally:
        conn.close()
    assert kept.path is not None
    return kept.path


@pytest.fixture
def earlier(app_db: Db, tmp_path: Path) -> tuple[Db, Path, list[Path]]:
    """Deployed as the earlier kit did: images as files (at base; just before the priority
    migration, the application having written a priority in between), the ledger in public."""
    folder = tmp_path / "images"
    files = [keep_file(app_db, [], folder)]
    ok(app_db.cli("upgrade", "--to", "add_financial_ratios_table"))
    app_db.execute("UPDATE stocks SET priority = 2 WHERE code = '005930'")  # was 5
    files.append(keep_file(app_db, ["add_product_info_table", "add_financial_ratios_table"], folder))
    ok(app_db.cli("upgrade", "--to", US001_HEAD))  # the earlier kit's head
    app_db.execute(EARLIER_LEDGER)
    return replace(app_db, to=US001_HEAD), folder, files


def test_the_next_command_adopts_the_ledger_and_the_local_images(
    earlier: tuple[Db, Path, list[Path]],
) -> None:
    db, folder, files = earlier
    refused = db.verify()
    assert refused.returncode == 4 and "python -m migrations adopt" in refused.output, refused.output[-2000:]
    assert "earlier kit's (public.schema_migrations)" in ok(db.cli("status"))
    said = ok(db.cli("backup", "--dir", str(folder.parent / "backups"), env={image.DIR_ENV: str(folder)}))
    assert "3 row(s) moved from public.schema_migrations" in said, said
    assert all(str(f) in said for f in files), said
    assert db.value("SELECT to_regclass('public.schema_migrations') IS NULL")
    assert db.value("SELECT count(*) FROM azak_registry.ledger WHERE state = 'applied'") == 3
    passed = db.verify()
    assert passed.returncode == 0, passed.output[-3000:]
    ok(db.cli("downgrade", "--to", "base"))
    assert db.value("SELECT priority FROM stocks WHERE code = '005930'") == 2
    rolled_back = db.verify("--to=base")  # judged against the adopted image of just before it
    assert rolled_back.returncode == 0, rolled_back.output[-3000:]
    db.execute("UPDATE stocks SET priority = 5 WHERE code = '005930'")
    caught = db.verify("--to=base")
    assert caught.returncode == 1 and "005930: 5, before the deploy 2" in caught.output, caught.output[-3000:]


def test_without_its_images_here_adoption_says_what_verification_needs(
    earlier: tuple[Db, Path, list[Path]], tmp_path: Path
) -> None:
    db, _, files = earlier
    said = ok(db.cli("adopt", env={image.DIR_ENV: str(tmp_path / "empty")}))
    assert "3 row(s) moved" in said and "needs --before FILE" in said, said
    missing = db.verify()
    assert missing.returncode == 1 and "no before-image of deployment" in missing.output, missing.output[
        -2000:
    ]
    with_file = db.verify(f"--before={files[1]}")  # just before the priorities changed
    assert with_file.returncode == 0, with_file.output[-3000:]


def test_adoption_takes_no_image_planted_beside_the_earlier_kits(
    earlier: tuple[Db, Path, list[Path]], tmp_path: Path
) -> None:
    """Beside the earlier kit's images: one of the broken state taken after the deployment, and
    one dated just after the genuine base image but writable by anyone, both named far in the
    future. Adoption takes the genuine image (taken before the ledger's first migration, owned
    and written by this user only): verification names the broken state."""
    db, folder, files = earlier
    db.execute("ALTER TABLE stocks ADD COLUMN planted integer")
    late = keep_file(db, [], tmp_path / "late")  # taken after the deployment
    far = folder / f"{late.name[:-30]}29991231_235959_000000.json.gz"
    late.rename(far)
    broken = image.load(far)
    genuine = image.load(files[0])
    just_after = datetime.fromisoformat(genuine.taken_at) + timedelta(microseconds=1)
    forged = image.BeforeImage(
        broken.database, just_after.isoformat(), broken.catalog, identity=broken.identity
    )
    image.write(forged, lambda out: None, tmp_path / "forged")
    assert forged.path is not None
    writable = folder / f"{late.name[:-30]}29991231_235958_000000.json.gz"
    forged.path.rename(writable)
    writable.chmod(0o666)
    said = ok(db.cli("adopt", env={image.DIR_ENV: str(folder)}))
    assert str(files[0]) in said and "2999" not in said, said
    caught = db.verify()
    assert caught.returncode == 1 and "column stocks.planted: expected nothing" in caught.output, (
        caught.output[-3000:]
    )
