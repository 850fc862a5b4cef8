"""``spruce index``: create, list, describe, delete and configure indexes."""

from __future__ import annotations

import sys
from enum import StrEnum

import typer
from rich.markup import escape

from spruce.cli.common import JSON_HELP, client, console, emit_fields, emit_json, emit_table

app = typer.Typer(help="Create, list, describe, configure and delete indexes.", no_args_is_help=True)


class Protection(StrEnum):
    enabled = "enabled"
    disabled = "disabled"


@app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="INDEX", help="1-45 characters of a-z, 0-9 and '-'."),
    dimension: int = typer.Option(None, "--dimension", "-d", min=1, max=20000, help="Dense dimension (1-20000)."),
    metric: str = typer.Option(None, "--metric", "-m", metavar="cosine|euclidean|dotproduct",
                               help="Similarity metric (default cosine; dotproduct for sparse)."),
    vector_type: str = typer.Option("dense", "--vector-type", metavar="dense|sparse",
                                    help="dense, or sparse (needs dotproduct)."),
    deletion_protection: bool = typer.Option(False, "--deletion-protection",
                                             help="Refuse deletion until disabled."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Create an index. It appears whole or not at all."""
    c = client(ctx)
    model = c.create_index(name, dimension=dimension, metric=metric, vector_type=vector_type,
                           deletion_protection="enabled" if deletion_protection else "disabled")
    if as_json:
        emit_json(model.to_dict())
        return
    console.print(f"created index [bold]{escape(model.name)}[/] ({model.vector_type}, dimension "
                  f"{model.dimension}, {model.metric})")


@app.command("list")
def list_(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List indexes."""
    found = local_models(ctx)
    models = found if found is not None else [m.to_dict() for m in client(ctx).list_indexes()]
    if as_json:
        emit_json({"indexes": models})
        return
    rows = [(m["name"], state_text(m["status"]), str(m["dimension"]), m["metric"], m["vector_type"],
             m["deletion_protection"]) for m in models]
    emit_table(("name", "state", "dimension", "metric", "vector type", "deletion protection"), rows)


def local_models(ctx: typer.Context, name: str | None = None) -> list[dict] | None:
    """The data folder's indexes read straight from their files (no engine, no lock): None with
    --host. With ``name``, that index only (NotFound when missing)."""
    from spruce.cli.common import GlobalOptions
    from spruce.engine import catalog

    opts: GlobalOptions = ctx.obj or GlobalOptions()
    if opts.host:
        return None
    root = catalog.data_dir(opts.data)
    try:
        names = [name] if name is not None else catalog.index_names(root)
    except OSError as exc:
        from spruce.cli.common import fail

        fail(f"cannot open data folder {opts.data or root}: {exc.strerror or exc}")
    out = []
    for n in names:
        cfg = catalog.config(root, n)
        if cfg is None:
            from spruce.errors import NotFound

            raise NotFound(f"index {n!r} not found")
        out.append(catalog.model(cfg))
    return out


def state_text(status: object) -> str:
    """``Ready``, or ``Initializing (restore job ID)`` while a restore fills the index."""
    if isinstance(status, dict):
        state, job = status.get("state", "Ready"), status.get("spruce_job")
    else:
        state, job = getattr(status, "state", "Ready"), getattr(status, "spruce_job", None)
    return f"{state} (restore job {job})" if job else state


@app.command("describe")
def describe(ctx: typer.Context, name: str = typer.Argument(..., metavar="INDEX"),
             as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Show an index's configuration."""
    found = local_models(ctx, name)
    m = found[0] if found is not None else client(ctx).describe_index(name).to_dict()
    if as_json:
        emit_json(m)
        return
    emit_fields(m.items())


@app.command("configure")
def configure(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="INDEX"),
    deletion_protection: Protection = typer.Option(None, "--deletion-protection", help="enabled or disabled."),
    tag: list[str] = typer.Option(None, "--tag", metavar="KEY=VALUE", help="Set a tag; an empty VALUE removes "
                                  "it (repeatable)."),
) -> None:
    """Change deletion protection or tags."""
    tags = None
    if tag:
        tags = {}
        for t in tag:
            if "=" not in t:
                raise typer.BadParameter(f"{t!r} is not KEY=VALUE", param_hint="--tag")
            k, v = t.split("=", 1)
            tags[k] = v
    client(ctx).configure_index(name, deletion_protection=deletion_protection.value if deletion_protection else None,
                                tags=tags)
    console.print(f"configured index [bold]{escape(name)}[/]")


@app.command("delete")
def delete(ctx: typer.Context, name: str = typer.Argument(..., metavar="INDEX"),
           yes: bool = typer.Option(False, "--yes", "-y", help="Delete without asking (required when "
                                    "not run on a terminal).")) -> None:
    """Delete an index and all its records. Refused while deletion protection is enabled.

    Asks first on a terminal; a script must pass --yes. Nothing else is touched: archives
    and backups of the index stay where they are."""
    if not yes:
        if not sys.stdin.isatty():
            raise typer.BadParameter("deleting an index cannot be undone: pass --yes to confirm "
                                     "(no terminal to ask on)", param_hint="--yes")
        if not typer.confirm(f"Delete index {name!r} and all its records?", default=False):
            console.print("nothing deleted")
            raise typer.Exit(1)
    client(ctx).delete_index(name)
    console.print(f"deleted index [bold]{escape(name)}[/]")
