"""The check's report: a plain-text table for the terminal and a self-contained HTML page.

Both show, per row, what was sent, what the studio must answer and what it answered. The HTML
page has no script and no external asset (it is mailed to studios and opened from disk), and
every value from the studio's answer is escaped: the answer is the studio's text, not ours.
"""

from __future__ import annotations

import datetime as dt
import html

from qwallet.studio_check.runner import CheckResult, RowResult

__all__ = ["html_page", "html_table", "summary", "text_table"]

_MARK = {"pass": "PASS", "miss": "MISS", "skip": "SKIP"}


def summary(result: CheckResult) -> str:
    counts = {kind: sum(r.outcome == kind for r in result.rows) for kind in _MARK}
    verdict = "passed" if result.passed() else "FAILED"
    return (
        f"{result.partner}: {verdict} — {counts['pass']} passed, {counts['miss']} missed,"
        f" {counts['skip']} skipped"
    )


def text_table(result: CheckResult) -> str:
    header = ("", "row", "must answer", "answered")
    lines = [(_MARK[r.outcome], r.title, r.must, r.answered) for r in result.rows]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(3)]

    def format_line(cells: tuple[str, str, str, str]) -> str:
        padded = [cell.ljust(widths[i]) for i, cell in enumerate(cells[:3])]
        return "  ".join([*padded, cells[3]]).rstrip()

    rule = "  ".join("-" * w for w in widths) + "  --------"
    return "\n".join([format_line(header), rule, *map(format_line, lines), "", summary(result)])


def _row_html(row: RowResult) -> str:
    return (
        f'<tr class="{row.outcome}" data-row="{html.escape(row.key)}">'
        f'<td class="outcome">{_MARK[row.outcome]}</td>'
        f"<td>{html.escape(row.title)}</td>"
        f"<td>{html.escape(row.must)}</td>"
        f'<td class="mono">{html.escape(row.answered)}</td></tr>'
    )


def html_table(result: CheckResult) -> str:
    """The table alone (the admin console embeds it in its own page)."""
    rows = "".join(_row_html(row) for row in result.rows)
    return (
        '<table class="studio-check" data-testid="studio-check">'
        "<thead><tr><th></th><th>row</th><th>must answer</th><th>answered</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        f'<p class="verdict" data-testid="studio-check-verdict">{html.escape(summary(result))}</p>'
    )


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
.mono { font-family: ui-monospace, monospace; font-size: 12px; word-break: break-all; }
tr.pass .outcome { color: #176b2c; } tr.miss .outcome { color: #b00020; font-weight: bold; }
tr.skip .outcome { color: #8a6d00; }
"""


def html_page(result: CheckResult) -> str:
    started = dt.datetime.fromtimestamp(result.started_at_ms / 1000, dt.UTC)
    mode = "Query Withdrawal rows only" if result.query_only else "every row"
    kind = "sandbox" if result.sandbox else "production"
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>Integration check: {html.escape(result.partner)}</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>Integration check of {html.escape(result.partner)}</h1>"
        f"<p>{kind} partner; {mode}; started {started:%Y-%m-%d %H:%M:%S} UTC.</p>"
        f"{html_table(result)}"
        "</body></html>\n"
    )
