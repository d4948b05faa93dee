"""The head of the HTML report: the result, the checklist and what to do now side by side, the
failures (expected vs found), the noted differences and the facts of the run; its CSS.

Its ids and classes keep the `us001` prefix of the reports so far, whatever the change
verified (a rename would break what selects on them, the tests included).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from verification.verdicts import CHECKLIST, one_line

if TYPE_CHECKING:
    from verification.report import DeploymentReport


def head(report: DeploymentReport, hide_environment: bool) -> str:
    """The report's head: checklist and what to do now side by side, failures, facts."""
    e = html.escape
    rows = []
    for number, v in enumerate(report.verdicts()):
        first = f"<div class='us001-why'>{e(one_line(v.failed[0].message, 110))}</div>" if v.failed else ""
        other = " us001-other" if number == len(CHECKLIST) else ""
        rows.append(
            f"<tr class='us001-{v.state}{other}'><th>{e(v.item)}</th>"
            f"<td class='us001-verdict'>{e(v.text())}{first}</td></tr>"
        )
    steps = "".join(
        f"<li>{e(s.text)}" + "".join(f"<pre>{e(c)}</pre>" for c in s.commands) + "</li>"
        for s in report.next_steps()
    )
    failures = "".join(
        f"<li><strong>{e(c.item)}</strong> <code>{e(c.name)}</code><br>{e(c.message)}</li>"
        for c in sorted(report.failed, key=lambda c: (order(c.item), c.nodeid))
    )
    facts = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in report.facts.items())
    verdict_class = "failed" if report.failed else "partial" if report.unchecked() else "passed"
    return (
        f"<style>{CSS}{HIDE_ENVIRONMENT if hide_environment else ''}</style>"
        f"<div id='us001'>"
        f"<p id='us001-result' class='us001-{verdict_class}'>{e(report.result)}"
        f"<span>{e(report.facts['Database'])}</span></p>"
        f"<div class='us001-top'>"
        f"<section id='us001-checklist'><h2>Checklist</h2>"
        f"<table id='us001-checklist-table'>{''.join(rows)}</table>"
        + "".join(f"<p class='us001-note'>{e(note)}</p>" for note in report.said["note"])
        + "</section>"
        f"<section id='us001-next-step'><h2>What to do now</h2><ol>{steps}</ol></section>"
        f"</div>"
        + (
            f"<section id='us001-failures'><h2>Failures: expected vs found</h2><ol>{failures}</ol></section>"
            if failures
            else ""
        )
        + (
            "<section id='us001-notes'><h2>Noted, not failing: what changes nothing the application does"
            f"</h2><ul>{''.join(f'<li>{e(n)}</li>' for n in report.notes)}</ul></section>"
            if report.notes
            else ""
        )
        + "<section id='us001-facts'><h2>This run</h2>"
        f"<table id='us001-summary'>{facts}</table></section>"
        f"<h2>Every check</h2></div>"
    )


def order(item: str) -> int:
    """Where a checklist item comes in the runbook's order (others after)."""
    return CHECKLIST.index(item) if item in CHECKLIST else len(CHECKLIST)


def escape_tree(value: Any) -> Any:
    """A metadata value with every string in it HTML-escaped."""
    if isinstance(value, dict):
        return {html.escape(str(k)): escape_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [escape_tree(v) for v in value]
    return html.escape(str(value))


CSS = """
body { color: #1b1b1b; font-size: 15px; max-width: 1400px; }
p, .run-count, .filter, .summary, #results-table { color: #1b1b1b; }
.summary__data > h2 { display: none; }
#us001 h2 { font-size: 17px; margin: 14px 0 6px; }
#us001-result { display: inline-block; font-weight: bold; font-size: 17px; padding: 4px 12px;
  border-radius: 4px; margin: 0; }
#us001-result.us001-passed { background: #d7f0dd; color: #0b5d23; }
#us001-result.us001-failed { background: #b3261e; color: #fff; }
#us001-result.us001-partial { background: #fbe7b5; color: #6a4a00; }
.us001-top { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1.15fr); gap: 28px;
  align-items: start; }
#us001-checklist-table { border-collapse: collapse; width: 100%; }
#us001-checklist-table th, #us001-checklist-table td { text-align: left; vertical-align: top;
  padding: 4px 8px; border-bottom: 1px solid #ddd; }
#us001-checklist-table th { white-space: nowrap; width: 9em; }
.us001-why { font-size: 13px; font-weight: normal; margin-top: 2px; }
#us001-result span { font-weight: normal; font-size: 15px; margin-left: 14px; }
tr.us001-other th, tr.us001-other td { border-top: 2px solid #999; }
#us001 code { overflow-wrap: anywhere; }
tr.us001-passed .us001-verdict { color: #0b5d23; }
tr.us001-failed .us001-verdict { color: #b3261e; font-weight: bold; }
tr.us001-failed th { color: #b3261e; }
tr.us001-skipped .us001-verdict, tr.us001-partial .us001-verdict { color: #6a4a00; }
#us001-next-step { border: 2px solid #1b1b1b; border-radius: 6px; padding: 0 14px 8px; }
#us001-next-step ol { padding-left: 20px; margin: 0; }
#us001-next-step li { margin: 6px 0; }
#us001 pre { background: #f1f1f1; color: #111; padding: 4px 8px; margin: 3px 0; white-space: pre-wrap;
  overflow-wrap: anywhere; font-size: 13px; }
#us001-failures li { margin: 4px 0; }
#us001-summary th { text-align: left; padding-right: 14px; }
#us001-summary td, #us001-summary th { padding: 2px 8px 2px 0; }
"""
HIDE_ENVIRONMENT = "#environment-header, #environment { display: none; }"
