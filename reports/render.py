"""Markup for decided tables: pure string functions from a Table to text.

Highlighting is decided before (reports/highlight.py); a renderer only maps bold/blue/missing
to its own markup.
"""

from __future__ import annotations

import csv
import html
import io
import json
from dataclasses import dataclass

from reports.highlight import BLUE_MARGIN, Cell

DASH = "–"


@dataclass
class Section:
    suite: str
    label: str | None  # "Bullet Safety Gym:" in the summary layout; None in a suite table
    rows: list[tuple[str, str, dict[str, Cell]]]  # (task key, task label, {method: Cell})


@dataclass
class Table:
    title: str
    methods: list[str]
    sections: list[Section]
    notes: list[str]  # provenance, one line each


def _num(value: float) -> str:
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text


def _value(cell: Cell, which: str) -> str:
    if cell.missing:
        return DASH
    value, spread = ((cell.reward, cell.reward_spread) if which == "reward"
                     else (cell.cost, cell.cost_spread))
    return _num(value) + (f" ± {_num(spread)}" if spread is not None else "")


def _cells(table: Table, cells: dict[str, Cell]):
    for method in table.methods:
        yield cells.get(method, Cell(None, None))


LEGEND = (f"Bold: safe (normalized cost < 1). Blue: the safe agent with the highest reward, "
          f"and any safe agent within {BLUE_MARGIN} of it at lower cost. {DASH}: no run.")


def render_markdown(table: Table) -> str:
    def mark(cell: Cell, text: str) -> str:
        if cell.blue:
            return f"**_{text}_**"  # GitHub Markdown has no colour: blue shows as bold italic
        return f"**{text}**" if cell.bold else text

    lines = [f"### {table.title}", ""] + [f"_{note}_  " for note in table.notes] + [""]
    lines.append("| Task | " + " | ".join(f"{m} reward ↑ | {m} cost ↓" for m in table.methods)
                 + " |")
    lines.append("|---|" + "---:|" * (2 * len(table.methods)))
    for section in table.sections:
        if section.label:
            lines.append(f"| **{section.label}** |" + " |" * (2 * len(table.methods)))
        for _, label, cells in section.rows:
            values = [mark(c, _value(c, k)) for c in _cells(table, cells)
                      for k in ("reward", "cost")]
            lines.append(f"| {label} | " + " | ".join(values) + " |")
    lines += ["", LEGEND + " (Markdown shows blue as bold italic.)"]
    return "\n".join(lines)


def _tex_escape(text: str) -> str:
    for char in "&%_#${}":
        text = text.replace(char, "\\" + char)
    return text.replace("±", r"$\pm$").replace(DASH, "--")


def render_latex(table: Table) -> str:
    def mark(cell: Cell, text: str) -> str:
        text = _tex_escape(text)
        if cell.blue:
            return rf"\textcolor{{blue}}{{\textbf{{{text}}}}}"
        return rf"\textbf{{{text}}}" if cell.bold else text

    n = len(table.methods)
    lines = ["% requires \\usepackage{booktabs}, \\usepackage{xcolor} and \\usepackage{graphicx}",
             r"\begin{table}[t]", r"\centering", r"\small",
             rf"\caption{{{_tex_escape(table.title)}}}",
             r"\resizebox{\textwidth}{!}{%",  # ten methods are wider than a page
             rf"\begin{{tabular}}{{l{'rr' * n}}}", r"\toprule",
             "Task & " + " & ".join(rf"\multicolumn{{2}}{{c}}{{{_tex_escape(m)}}}"
                                    for m in table.methods) + r" \\",
             " ".join(rf"\cmidrule(lr){{{2 + 2 * i}-{3 + 2 * i}}}" for i in range(n)),
             " & " + " & ".join([r"reward $\uparrow$ & cost $\downarrow$"] * n) + r" \\",
             r"\midrule"]
    for section in table.sections:
        if section.label:
            lines.append(rf"\multicolumn{{{1 + 2 * n}}}{{l}}{{\textit{{{section.label}}}}} \\")
        for task, label, cells in section.rows:
            if task == "Average":
                lines.append(r"\midrule")
            values = [mark(c, _value(c, k)) for c in _cells(table, cells)
                      for k in ("reward", "cost")]
            lines.append(f"{_tex_escape(label)} & " + " & ".join(values) + r" \\")
        if section.label and section is not table.sections[-1]:
            lines.append(r"\midrule")
    lines += [r"\bottomrule", r"\end{tabular}}"]
    lines += [rf"\par\smallskip\footnotesize {_tex_escape(note)}" for note in table.notes]
    lines += [r"\end{table}"]
    return "\n".join(lines)


def render_html(table: Table) -> str:
    def mark(cell: Cell, text: str) -> str:
        text = html.escape(text)
        if cell.blue:
            return f'<td class="blue"><b style="color:blue">{text}</b></td>'
        return f"<td><b>{text}</b></td>" if cell.bold else f"<td>{text}</td>"

    out = [f"<h3>{html.escape(table.title)}</h3>"]
    out += [f"<p><small>{html.escape(note)}</small></p>" for note in table.notes]
    out.append("<table>")
    out.append("<tr><th rowspan=\"2\">Task</th>" + "".join(
        f'<th colspan="2">{html.escape(m)}</th>' for m in table.methods) + "</tr>")
    out.append("<tr>" + "<th>reward &uarr;</th><th>cost &darr;</th>" * len(table.methods)
               + "</tr>")
    for section in table.sections:
        if section.label:
            out.append(f'<tr><th colspan="{1 + 2 * len(table.methods)}" align="left">'
                       f"{html.escape(section.label)}</th></tr>")
        for _, label, cells in section.rows:
            out.append(f"<tr><td>{html.escape(label)}</td>" + "".join(
                mark(c, _value(c, k)) for c in _cells(table, cells)
                for k in ("reward", "cost")) + "</tr>")
    out.append("</table>")
    out.append(f"<p><small>{html.escape(LEGEND)}</small></p>")
    return "\n".join(out)


def table_rows(tables: list[Table]) -> list[dict]:
    """The machine-readable form: one object per (row, method), Average rows included."""
    rows = []
    for table in tables:
        for section in table.sections:
            for task, _, cells in section.rows:
                for method in table.methods:
                    cell = cells.get(method, Cell(None, None))
                    rows.append({"suite": section.suite, "task": task, "method": method,
                                 "reward": cell.reward, "cost": cell.cost,
                                 "reward_spread": cell.reward_spread,
                                 "cost_spread": cell.cost_spread,
                                 "bold": cell.bold, "blue": cell.blue})
    return rows


def render_json(tables: list[Table]) -> str:
    return json.dumps(table_rows(tables), indent=1)


def render_csv(tables: list[Table]) -> str:
    buffer = io.StringIO()
    rows = table_rows(tables)
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["suite"],
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().rstrip("\n")
