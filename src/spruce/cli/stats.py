"""``spruce stats``: record counts per namespace."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from spruce.cli.common import client, console, parse_json_option
from spruce.cli.index import state_text


def stats(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Index name."),
    filter: str = typer.Option(None, "--filter", help="Count only records matching this metadata filter (JSON)."),
) -> None:
    """Show an index's record counts per namespace."""
    c = client(ctx)
    s = c.Index(name).describe_index_stats(filter=parse_json_option(filter, "--filter"))
    status = c.describe_index(name).status
    title = f"{name}: {s.dimension or 'sparse'} {s.metric}"
    if status.state != "Ready":
        title += f" [{state_text(status)}: partial until the job completes]"
    table = Table("namespace", "records", title=escape(title))
    for ns, summary in s.namespaces.items():
        table.add_row(escape(ns or "__default__"), f"{summary.vector_count:,}")
    table.add_row("[bold]total[/]", f"[bold]{s.total_vector_count:,}[/]")
    console.print(table)
