"""``spruce verify`` and ``spruce inspect``: check an archive, or show what its manifest says."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from spruce.cli.common import console, err_console

if TYPE_CHECKING:
    from spruce.storage import Store

VERIFY_HELP = """Verify the archive at SRC by re-reading every byte.

Checks that the manifest parses and matches the JSON Schema, that every file it lists
exists with the listed size and sha256, that each file decodes and holds exactly the
listed number of valid records, and that Parquet files have the import schema.
Exit 0 if intact, 1 if not, with one line per bad file. Part files that the manifest
does not list (orphans of an interrupted export) are reported but harmless.
"""


def _store(src: str, endpoint_url: str | None) -> Store:
    """The archive's store; ``ARCHIVE/manifest.json`` names its archive too."""
    from spruce.storage import open_store

    opts = {"endpoint_url": endpoint_url} if endpoint_url and src.startswith("s3://") else {}
    store = open_store(src, **opts)
    local = store.local_path("")
    if local and os.path.isfile(local) and os.path.basename(local) == "manifest.json":
        return open_store(os.path.dirname(local))
    return store


def verify(
    src: str = typer.Argument(..., help="Archive folder or storage URI."),
    endpoint_url: str = typer.Option(None, "--endpoint-url", envvar="AWS_ENDPOINT_URL",
                                     help="S3-compatible endpoint."),
) -> None:
    from spruce.archive import verify_archive

    report = verify_archive(_store(src, endpoint_url))
    for orphan in report.orphans:
        err_console.print(f"[yellow]note:[/] {escape(orphan)}: not in the manifest (orphan of an earlier run)")
    if not report.ok:
        for p in report.problems:
            err_console.print(f"[bold red]BAD[/] {escape(p.path)}: {p.kind}: {escape(p.message)}",
                              soft_wrap=True)
        err_console.print(f"[bold red]{len(report.bad_files)} bad file(s)[/] in {escape(report.uri)}")
        raise typer.Exit(1)
    console.print(f"[green]OK[/] {escape(report.uri)}: {report.files_checked} files, "
                  f"{report.records_checked:,} records, {report.bytes_checked:,} bytes verified")


def inspect(
    src: str = typer.Argument(..., help="Archive folder or storage URI."),
    endpoint_url: str = typer.Option(None, "--endpoint-url", envvar="AWS_ENDPOINT_URL",
                                     help="S3-compatible endpoint."),
) -> None:
    """Show an archive's manifest as a table (reads only the manifest; use verify to check data)."""
    from rich.table import Table

    from spruce.archive import ArchiveReader

    m = ArchiveReader(_store(src, endpoint_url)).manifest
    src_info = m.source
    head = Table(show_header=False, title=f"archive {escape(src)}")
    for k, v in (
        ("export id", m.export_id), ("created", m.created_at), ("spruce", m.spruce_version),
        ("index", f"{src_info.get('index')} ({src_info.get('vector_type')}, dimension "
                  f"{src_info.get('dimension')}, {src_info.get('metric')})"),
        ("consistency", m.consistency), ("snapshot", m.snapshot), ("selection", m.selection),
        ("data", f"{m.data.get('format')} / {m.data.get('compression')}"),
    ):
        head.add_row(k, escape(str(v)))
    console.print(head)
    table = Table("namespace", "folder", "records", "files", "bytes")
    for ns in m.namespaces:
        table.add_row(escape(ns.name or "__default__"), escape(ns.dir), f"{ns.record_count:,}", str(len(ns.files)),
                      f"{sum(f.bytes for f in ns.files):,}")
    t = m.totals
    table.add_row("[bold]total[/]", "", f"[bold]{t['records']:,}[/]", str(t["files"]), f"{t['bytes']:,}")
    console.print(table)


verify.__doc__ = VERIFY_HELP
