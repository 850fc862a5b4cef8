"""``spruce stats``: record counts per namespace."""

from __future__ import annotations

import typer

from spruce.cli.common import JSON_HELP, client, emit_json, emit_table, parse_json_option
from spruce.cli.index import state_text


def stats(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="INDEX", help="Index name."),
    filter: str = typer.Option(None, "--filter", metavar="JSON",
                               help="Count only records matching this metadata filter (JSON)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Show an index's record counts per namespace."""
    c = client(ctx)
    s = c.Index(name).describe_index_stats(filter=parse_json_option(filter, "--filter"))
    status = c.describe_index(name).status
    if as_json:
        emit_json({
            "index": name, "dimension": s.dimension, "metric": s.metric, "state": status.state,
            "namespaces": {ns or "__default__": {"vectorCount": v.vector_count} for ns, v in s.namespaces.items()},
            "totalVectorCount": s.total_vector_count,
        })
        return
    title = f"{name}: {s.dimension or 'sparse'} {s.metric}"
    if status.state != "Ready":
        title += f" [{state_text(status)}: partial until the job completes]"
    rows = [(ns or "__default__", f"{summary.vector_count:,}") for ns, summary in s.namespaces.items()]
    emit_table(("namespace", "records"), [*rows, ("total", f"{s.total_vector_count:,}")], title=title)
