"""``spruce index``: create, list, describe, delete and configure indexes."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from spruce.cli.common import client, console, emit_table

app = typer.Typer(help="Create, list, describe, configure and delete indexes.", no_args_is_help=True)


@app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="1-45 characters of a-z, 0-9 and '-'."),
    dimension: int = typer.Option(None, "--dimension", "-d", help="Dense dimension (1-20000)."),
    metric: str = typer.Option(None, "--metric", "-m", help="cosine, euclidean or dotproduct."),
    vector_type: str = typer.Option("dense", "--vector-type", help="dense, or sparse (needs dotproduct)."),
    deletion_protection: bool = typer.Option(False, "--deletion-protection",
                                             help="Refuse deletion until disabled."),
) -> None:
    """Create an index. It appears whole or not at all."""
    c = client(ctx)
    model = c.create_index(name, dimension=dimension, metric=metric, vector_type=vector_type,
                           deletion_protection="enabled" if deletion_protection else "disabled")
    console.print(f"created index [bold]{model.name}[/] ({model.vector_type}, dimension "
                  f"{model.dimension}, {model.metric})")


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """List indexes."""
    rows = [(m.name, state_text(m.status), str(m.dimension), m.metric, m.vector_type, m.deletion_protection)
            for m in client(ctx).list_indexes()]
    emit_table(("name", "state", "dimension", "metric", "vector type", "deletion protection"), rows)


def state_text(status: object) -> str:
    """``Ready``, or ``Initializing (restore job ID)`` while a restore fills the index."""
    state = getattr(status, "state", "Ready")
    job = getattr(status, "spruce_job", None)
    return f"{state} (restore job {job})" if job else state


@app.command("describe")
def describe(ctx: typer.Context, name: str) -> None:
    """Show an index's configuration."""
    m = client(ctx).describe_index(name)
    table = Table("field", "value", show_header=False)
    for k, v in m.to_dict().items():
        table.add_row(k, escape(str(v)))
    console.print(table)


@app.command("configure")
def configure(
    ctx: typer.Context,
    name: str,
    deletion_protection: str = typer.Option(None, "--deletion-protection", help="enabled or disabled."),
    tag: list[str] = typer.Option(None, "--tag", help="KEY=VALUE; an empty VALUE removes the tag."),
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
    client(ctx).configure_index(name, deletion_protection=deletion_protection, tags=tags)
    console.print(f"configured index [bold]{name}[/]")


@app.command("delete")
def delete(ctx: typer.Context, name: str) -> None:
    """Delete an index and all its records. Refused while deletion protection is enabled."""
    client(ctx).delete_index(name)
    console.print(f"deleted index [bold]{name}[/]")
