"""``spruce stats``: record counts per namespace."""

from __future__ import annotations

import typer

from spruce.cli.common import JSON_HELP, client, emit_json, emit_table, parse_json_option
from spruce.cli.index import local_models, state_text


def stats(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="INDEX", help="Index name."),
    filter: str = typer.Option(None, "--filter", metavar="JSON",
                               help="Count only records matching this metadata filter (JSON)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Show an index's record counts per namespace (read from the store, without loading vectors)."""
    flt = parse_json_option(filter, "--filter")
    found = local_models(ctx, name) if flt is None else None
    if found is not None:  # no filter, local: counts straight from the index's file
        from spruce.cli.common import GlobalOptions
        from spruce.engine import catalog

        m = found[0]
        counts = catalog.namespace_counts(catalog.data_dir((ctx.obj or GlobalOptions()).data), name)
        dimension, metric, status = m["dimension"], m["metric"], m["status"]
    else:
        c = client(ctx)
        s = c.Index(name).describe_index_stats(filter=flt)
        counts = {ns: v.vector_count for ns, v in s.namespaces.items()}
        dimension, metric, status = s.dimension, s.metric, c.describe_index(name).to_dict()["status"]
    total = sum(counts.values())
    if as_json:
        emit_json({
            "index": name, "dimension": dimension, "metric": metric, "state": status["state"],
            "namespaces": {ns or "__default__": {"vectorCount": n} for ns, n in counts.items()},
            "totalVectorCount": total,
        })
        return
    title = f"{name}: {dimension or 'sparse'} {metric}"
    if status["state"] != "Ready":
        title += f" [{state_text(status)}: partial until the job completes]"
    rows = [(ns or "__default__", f"{n:,}") for ns, n in counts.items()]
    emit_table(("namespace", "records"), [*rows, ("total", f"{total:,}")], title=title)
