"""Human renderings of report data (rich tables), kept apart from the data types."""

from __future__ import annotations

import io
import re

__all__ = ["warning_summary", "render_report", "render_rows", "render_comparison", "render_fit_table", "to_text", "terminal_safe"]

# C0 controls but newline and tab, DEL, C1 controls, and the bidirectional overrides/isolates
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: str, keep: str = "") -> str:
    """``text`` with every character that could drive a terminal (escape sequences, carriage
    returns, bidirectional overrides) written as a visible escape (``\\x1b``, ``\\u202e``).
    The CLI passes every message through this: node names and paths come from files.
    Characters in ``keep`` stay (GitHub annotations escape CR their own way)."""

    def esc(m: re.Match) -> str:
        c = ord(m.group(0))
        if m.group(0) in keep:
            return m.group(0)
        return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"

    return _UNSAFE.sub(esc, text)


def to_text(renderable, width: int = 110) -> str:
    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, width=width, force_terminal=False, color_system=None).print(renderable)
    return buf.getvalue()


def render_rows(title: str, columns: list[str], rows: list[list], width: int = 110) -> str:
    from rich.table import Table
    from rich.text import Text

    t = Table(title=Text(title) if title else None, title_justify="left")
    for c in columns:
        t.add_column(Text(c))
    for r in rows:
        t.add_row(*[Text(str(c)) for c in r])  # Text: no rich markup, so "[rule]" stays visible
    return to_text(t, width)


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return "-" if x is None else str(x)


def render_report(report) -> str:
    status = "FITS" if report.fits else "DOES NOT FIT"
    out = [f"{report.target}:{report.variant}: {status}"]
    if report.settings:
        out.append("settings: " + ", ".join(f"{k}={_fmt(v)}" for k, v in report.settings.items()))
    rows = [[r.name, _fmt(r.used), _fmt(r.limit), r.unit, r.confidence or "-", "ok" if r.fits else "OVER"] for r in report.resources]
    if rows:
        out.append(render_rows("Resources", ["resource", "used", "limit", "unit", "limit known from", ""], rows))
    if report.violations:
        vrows = [[v.severity, v.rule, v.node or "-", _fmt(v.limit), _fmt(v.actual), v.message + (f" ({v.hint})" if v.hint else "")] for v in report.violations]
        out.append(render_rows("Violations", ["severity", "rule", "node", "limit", "actual", "message / hint"], vrows))
    for n in report.notes:
        out.append(f"note: {n}")
    return "\n".join(out)


def render_comparison(cmp: dict) -> str:
    """Table of per-output spike counts (or Vmem sums), chip against reference, and the agreement
    figures of a :func:`nirdeploy.compare_outputs` result. When either side's output is silent on
    every sample it says so instead of printing agreement figures (they would measure nothing)."""
    import math

    readout = cmp.get("readout", "spikes")
    unit = "spikes" if readout == "spikes" else "sum of Vmem"
    rows = [[i, f"{c:g}", f"{r:g}"] for i, (c, r) in enumerate(zip(cmp["chip_counts"], cmp["reference_counts"]))]
    table = render_rows("", ["output", f"chip {unit}", f"reference {unit}"], rows)
    head = f"Chip vs reference (chip shifted by {cmp['latency_steps']} steps of latency)\n" + table
    n = cmp.get("samples")
    sc, sr = cmp.get("silent_chip_samples", 0), cmp.get("silent_reference_samples", 0)
    if n is not None and (sc == n or sr == n):
        who = " and ".join(w for w, k in (("the chip's", sc), ("the reference's", sr)) if k == n)
        return head + f"{who} output is silent on all {n} samples (no output activity): no agreement figures are meaningful\n"

    def num(v, fmt):
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

    agree = cmp["argmax_agreement"]
    return head + (
        f"{'spike-count' if readout == 'spikes' else 'Vmem-sum'} correlation {num(cmp['count_correlation'], '.3f')}; "
        f"element-wise agreement {cmp['elementwise_agreement']:.3f}; "
        f"same winning output in {num(None if agree is None else 100 * agree, '.1f')} % of samples"
        + (f" (of the {n - sr} the reference decides; silent samples: chip {sc}, reference {sr})" if sc or sr else "") + "\n"
    )


def warning_summary(report) -> str:
    """``"3: rule_a (2), rule_b"``: how many warnings a report carries and their rules, in order."""
    rules: dict[str, int] = {}
    for v in report.violations:
        if v.severity == "warning":
            rules[v.rule] = rules.get(v.rule, 0) + 1
    if not rules:
        return "-"
    return f"{sum(rules.values())}: " + ", ".join(f"{k} ({n})" if n > 1 else k for k, n in rules.items())


def render_fit_table(reports) -> str:
    """One row per target:variant: fits or not, the first blocking reason and the warnings
    (``check --target all``). A target that fits can still run differently from the float
    network (time constants, weights rounding to zero...): the warnings column says so, and the
    footer names the command that shows them in full."""
    rows = [[f"{r.target}:{r.variant}", "yes" if r.fits else "no", r.first_blocking_reason() or "-", warning_summary(r)] for r in reports]
    text = render_rows("Fit on every target", ["target", "fits", "first blocking reason", "warnings (chip differs from float)"], rows)
    if any(warning_summary(r) != "-" for r in reports):
        text += "warnings: check GRAPH --target TARGET:VARIANT prints each with its numbers and hint\n"
    return text
