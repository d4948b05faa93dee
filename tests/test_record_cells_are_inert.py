"""Every cell of the deployment record is inert markdown.

Guarantee (README, "The report"): whatever a value holds, its row rendered by GitHub's own
markdown (cmark-gfm with its table, autolink, strikethrough and tag-filter extensions, raw
HTML let through so that any that slipped would show) is one table row of seven cells, each
reading as the value (whitespace collapsed, a secret it shows as ***, zero-width spaces
aside), and makes no link,
image, emphasis, strikethrough or HTML; no text is left that GitHub turns into a mention or
an issue reference, and no unescaped `$` (math).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import cmarkgfm
from cmarkgfm.cmark import Options
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrations import record
from migrations.dburl import mask_text

TABLE_TAGS = {"table", "thead", "tbody", "tr", "th", "td"}
MENTION = re.compile(r"(?<![\w/`])@[A-Za-z0-9]")  # what GitHub links as a person or team
REFERENCE = re.compile(r"(?<![\w&])(?:#|GH-)\d", re.IGNORECASE)  # what it links as an issue
MARKDOWN = [*"[]()!*_~`<>&|\\@#:/$.-=\"' ", "http://", "https://", "www.", "mailto:", "GH-", "x", "7"]
HOSTILE = [
    "![pwned](https://evil.example/x.png)",
    "[click me](https://evil.example) and [ref][1] and [^note]",
    "<https://evil.example> https://evil.example www.evil.example ops@evil.example",
    "@octocat @org/team cc @everyone, fixes #12 and GH-7, owner/repo#3",
    "*bold* **strong** _em_ __init__ ~strike~ ~~strike~~ $x^2$ $$y$$",
    "<img src=x onerror=alert(1)> &lt;b&gt; a | b \\| c `code` \\*",
    "snake_case_name test_rewrites::test_x[stocks.priority]",
]


class Cells(HTMLParser):
    """The rendered table: its tags and each cell's text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.rows: list[list[str]] = []
        self.in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.rows[-1].append("")
            self.in_cell = True

    def handle_endtag(self, tag: str) -> None:
        self.in_cell = self.in_cell and tag not in ("td", "th")

    def handle_data(self, data: str) -> None:
        if self.in_cell:
            self.rows[-1][-1] += data


def rendered(entry: record.Entry, path: Path) -> Cells:
    """The record with this entry, as GitHub renders it."""
    path.unlink(missing_ok=True)
    record.append(entry, path)
    html = cmarkgfm.github_flavored_markdown_to_html(path.read_text(), options=Options.CMARK_OPT_UNSAFE)
    cells = Cells()
    cells.feed(html)
    return cells


def assert_inert(value: str, path: Path) -> None:
    entry = record.Entry("verify", "FAILED", value, environment=value, executor="ops", date="2026-01-01")
    cells = rendered(entry, path)
    assert set(cells.tags) <= TABLE_TAGS, (value, cells.tags)
    assert len(cells.rows) == 2 and len(cells.rows[1]) == 7, (value, cells.rows)
    shown = [cell.replace("\u200b", "") for cell in cells.rows[1]]
    assert shown[1] == shown[5] == " ".join(mask_text(value).split()), (value, shown)
    for cell in cells.rows[1]:
        assert not MENTION.search(cell) and not REFERENCE.search(cell), (value, cell)
    raw = path.read_text().splitlines()[-1]
    assert not re.search(r"(?<!\\)\$", raw), raw


def test_hostile_values_render_as_text(tmp_path: Path) -> None:
    for value in HOSTILE:
        assert_inert(value, tmp_path / "deployments.md")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.lists(st.sampled_from(MARKDOWN), max_size=40).map("".join))
def test_any_value_renders_as_itself_and_makes_nothing(tmp_path: Path, value: str) -> None:
    assert_inert(value, tmp_path / "deployments.md")


def test_a_secret_in_a_value_is_masked(tmp_path: Path) -> None:
    path = tmp_path / "deployments.md"
    record.append(record.Entry("upgrade", "FAILED", "cannot connect: password=Hunter2-x token: abc123"), path)
    row = path.read_text().splitlines()[-1]
    assert "Hunter2" not in row and "abc123" not in row
