"""What the commands print: JSON documents, the history and costs tables, the status text."""

from __future__ import annotations

import shutil
import sys

import click

from optiinfra_tui.formats import (
    attempts_label,
    clip,
    duration,
    error_text,
    json_text,
    money,
    types_label,
)


def emit_json(doc) -> None:
    click.echo(json_text(doc))


def run_line(run) -> str:
    """One run, as `collect` reports it when it ends."""
    line = (f"run {run.id} {run.status}: {run.provider}/{run.customer_id} [{run.data_types}] "
            f"attempt {attempts_label(run.status, run.attempt, run.max_attempts)}, "
            f"{run.metrics_collected} rows, {duration(run.duration_ms)}")
    if run.error_message and run.status != "success":
        line += f"\n  {run.error_kind}: {run.error_message}"
    return line


_HISTORY_WIDTHS = (6, 9, 8, 18, 21, 8, 5, 8, 7, 19)


def print_history(found: list) -> None:
    """The `history` table, newest first."""
    widths = _HISTORY_WIDTHS
    click.echo(_history_line(widths, ("ID", "STATUS", "PROVIDER", "CUSTOMER", "TYPES",
                                      "TRIGGER", "TRY", "ROWS", "TOOK", "QUEUED (UTC)"), "ERROR"))
    # On a terminal the error is cut to its width; piped, it is whole (for grep and scripts).
    room = (shutil.get_terminal_size().columns - sum(widths) - 2 * len(widths)
            if sys.stdout.isatty() else None)
    for r in found:
        error = error_text(r.error_kind, r.error_message)
        click.echo(_history_line(widths, (
            r.id, r.status, r.provider, r.customer_id, types_label(r.provider, r.data_types),
            r.trigger, attempts_label(r.status, r.attempt, r.max_attempts),
            r.metrics_collected, duration(r.duration_ms), f"{r.queued_at:%Y-%m-%d %H:%M:%S}"),
            clip(error, max(room, 20), words=True) if room is not None else error))


def _history_line(widths: tuple[int, ...], values: tuple, error: str) -> str:
    """One line of `history`: numbers right-aligned, every cut cell ending in `…`."""
    cells = [f"{v:>{w}}" if isinstance(v, int) else f"{clip(str(v), w):<{w}}"
             for v, w in zip(values, widths, strict=True)]
    return "  ".join(cells + [error]).rstrip()


def print_status(snap) -> None:
    """`status` as text: backends, queue, workers, schedules, the last hour."""
    click.echo(f"mode: {snap.mode}  (queue={snap.backends['queue']}, "
               f"history={snap.backends['history']}, metrics={snap.backends['metrics']})")
    if snap.owner is not None:  # chDB: one process per data dir runs the collections
        click.echo("collections run in: "
                   + (snap.owner or "no process (start optiinfra-tui or --headless)"))
    if snap.alerts:  # what the webhooks were told, first: it is why someone runs `status`
        click.echo(f"alerts: {len(snap.alerts)} firing")
        for a in snap.alerts:
            click.echo(f"  {a.label}  since {a.since:%Y-%m-%d %H:%M:%S} UTC "
                       f"({', '.join(a.alerts)})")
            click.echo(f"    {a.summary}")
    click.echo("backends:")
    for h in snap.health:
        state = f"ok {h.latency_ms:.1f} ms" if h.ok and h.latency_ms is not None else (
            "ok" if h.ok else "DOWN")
        late = h.late(snap.taken_at)
        when = f" (checked {h.checked_at:%H:%M:%S} UTC{', ' + late if late else ''})" if (
            h.checked_at) else ""
        click.echo(f"  {h.name:<22} {state:<14} {h.message}{when}".rstrip())
    if snap.queue:
        click.echo(f"queue: {snap.queue.pending} pending, {len(snap.queue.scheduled)} scheduled, "
                   f"{len(snap.queue.retrying)} retrying")
        for run_id, label, at in snap.queue.retrying:
            click.echo(f"  retry run {run_id} {label} at {at:%H:%M:%S} UTC" if at else
                       f"  retry run {run_id} {label}")
    click.echo(f"workers: {len(snap.workers)}")
    for w in snap.workers:
        click.echo(f"  {w.host}:{w.pid} {w.thread:<10} {w.kind:<13} {w.state:<5} "
                   f"{w.task or '-':<30} done {w.processed} failed {w.failed}")
    click.echo("schedules:")
    for s in snap.schedules:
        nxt = f"{s.next_run:%Y-%m-%d %H:%M:%S} UTC" if s.next_run else "-"
        click.echo(f"  {s.name:<20} {s.provider}/{','.join(s.data_types):<14} {s.every:<16} "
                   f"next {nxt}{'  (paused)' if s.paused else ''}")
        if s.credentials_note():
            click.echo(f"    {s.credentials_note()}")
    st = snap.stats
    rate = f"{st.success_rate:.0%}" if st.success_rate is not None else "-"
    click.echo(f"last hour: {st.runs} runs, success {rate}, p50 {st.p50_ms or '-'} ms, "
               f"p95 {st.p95_ms or '-'} ms, {st.rows} rows")


def print_costs(by: str, since, totals: list, summary: list) -> None:
    """The `costs` table: one line per key (by service, per provider), a total per currency,
    month to date, a legend. Amounts at each currency's precision, in columns as wide as
    their widest figure."""
    names = [(clip(t.key, 32),) + ((t.provider,) if by == "service" else ()) for t in totals]
    lines = [(*name, t.currency, t.billed_cost, t.estimated_cost, t.rows)
             for name, t in zip(names, totals, strict=True)]
    lines.append(None)  # the blank line before the totals
    for currency in sorted({t.currency for t in totals}):  # never add currencies
        mine = [t for t in totals if t.currency == currency]
        lines.append(("TOTAL", *([""] if by == "service" else []), currency,
                      sum(t.billed_cost for t in mine), sum(t.estimated_cost for t in mine),
                      sum(t.rows for t in mine) if by != "day" else None))
    heads = (by.upper(), *(["PROVIDER"] if by == "service" else []), "CUR", "BILLED",
             "ESTIMATED", "TOTAL", "ROWS")
    texts = len(heads) - 4  # the name columns, then the figures
    cells = [None if line is None else (
        *line[:texts], *(money(v, line[texts - 1], symbol=False) for v in (
            line[texts], line[texts + 1], line[texts] + line[texts + 1])),
        "-" if line[-1] is None else f"{line[-1]}") for line in lines]
    widths = [max([len(h)] + [len(c[i]) for c in cells if c is not None])
              for i, h in enumerate(heads)]
    widths[0], widths[texts - 1] = 32, 4
    for row in [heads, *cells]:
        click.echo("" if row is None else "  ".join(
            f"{v:<{w}}" if i < texts else f"{v:>{w}}" for i, (v, w) in enumerate(
                zip(row, widths, strict=True))).rstrip())
    for s in sorted(summary, key=lambda s: s.currency):
        click.echo(f"Month to date ({s.month_start:%Y-%m-%d} to {s.today:%Y-%m-%d}, UTC): "
                   f"{money(s.month_to_date, s.currency)}")
    click.echo("\nBILLED: invoice lines. ESTIMATED: pending charges of months not invoiced yet. "
               "TOTAL: both.\nMONTH TO DATE: each charge spread over the days of its charge "
               "period, summed over this month's days so far." + (
                   f"\nFrom {since:%Y-%m-%d} on: charges spread the same way, counted from "
                   "that day." if since else "") + (
                   "\nBy day, ROWS are the lines charged on that day." if by == "day" else "") +
               "\nAmounts are rounded to each currency's smallest unit; --json gives them "
               "exactly.")
