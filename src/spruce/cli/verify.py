"""``spruce verify`` and ``spruce inspect``: check an archive, or show what its manifest says."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from spruce.cli.common import JSON_HELP, console, emit_fields, emit_json, emit_table, err_console

if TYPE_CHECKING:
    from spruce.storage import Store

VERIFY_HELP = """Verify the archive at SRC by re-reading every byte.

Checks that the manifest parses and matches the JSON Schema, that every file it lists
exists with the listed size and sha256, that each file decodes and holds exactly the
listed number of valid records, and that Parquet files have the import schema.
Exit 0 if intact, 1 if not, with one line per bad file. Part files that the manifest
does not list (orphans of an interrupted export) are reported but harmless.

An encrypted archive is verified with its key (--key-file FILE, or the passphrase in
SPRUCE_ARCHIVE_PASSPHRASE) as any other: the manifest's HMAC, every segment of every file,
every record. Without the key, only each file's size and sha256 (of the encrypted bytes) are
checked, and the output says that records were not decrypted; --read-data insists on reading
every record (it fails without the key).
"""


def _store(src: str, endpoint_url: str | None) -> Store:
    """The archive's store; ``ARCHIVE/manifest.json`` names its archive too."""
    from spruce.storage import open_archive_store

    return open_archive_store(src, **({"endpoint_url": endpoint_url} if endpoint_url and src.startswith("s3://")
                                      else {}))


def _report(ctx: typer.Context, src: str, endpoint_url: str | None, what: str, *, key_file: str | None = None,
            read_data: bool = False) -> dict:
    """The verify report or manifest as a dict: from the server's storage with --host, else here."""
    from spruce.cli.common import GlobalOptions, client, fail
    from spruce.cli.key import reading_key

    opts: GlobalOptions = ctx.obj or GlobalOptions()
    if opts.host:
        if key_file or read_data:
            fail("--key-file and --read-data verify in this process (a key never leaves it): drop --host")
        c = client(ctx)
        return c.verify_archive(src) if what == "verify" else c.inspect_archive(src)
    from spruce.archive import ArchiveReader, verify_archive

    store = _store(src, endpoint_url)
    if what != "verify":
        return ArchiveReader(store).manifest.to_dict()
    return verify_archive(store, key=reading_key(key_file), read_data=read_data or None).to_dict()


def verify(
    ctx: typer.Context,
    src: str = typer.Argument(..., help="Archive folder or storage URI (with --host: on the server)."),
    endpoint_url: str = typer.Option(None, "--endpoint-url", envvar="AWS_ENDPOINT_URL",
                                     help="S3-compatible endpoint."),
    key_file: str = typer.Option(None, "--key-file", help="Encrypted archives: the key file (or set "
                                 "SPRUCE_ARCHIVE_PASSPHRASE); with it every record is decrypted and checked."),
    read_data: bool = typer.Option(False, "--read-data", help="Decode and validate every record; for an "
                                   "encrypted archive this needs the key (it is the default for others)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    report = _report(ctx, src, endpoint_url, "verify", key_file=key_file, read_data=read_data)
    if as_json:
        emit_json(report)
        if not report["ok"]:
            raise typer.Exit(1)
        return
    for orphan in report["orphans"]:
        err_console.print(f"[yellow]note:[/] {escape(orphan)}: not in the manifest (orphan of an earlier run)")
    if not report["ok"]:
        for p in report["problems"]:
            err_console.print(f"[bold red]BAD[/] {escape(p['path'])}: {p['kind']}: {escape(p['message'])}",
                              soft_wrap=True)
        err_console.print(f"[bold red]{len(report['badFiles'])} bad file(s)[/] in {escape(report['uri'])}")
        raise typer.Exit(1)
    if not report.get("recordsRead", True):
        console.print(f"[green]OK[/] {escape(report['uri'])}: {report['filesChecked']} files, "
                      f"{report['bytesChecked']:,} bytes verified (size and sha256 of the stored bytes)")
        why = ("encrypted, and no key was given (--key-file FILE, or SPRUCE_ARCHIVE_PASSPHRASE)"
               if report.get("encrypted") else "--read-data was not asked for")
        console.print(f"[yellow]note:[/] records were not decrypted or checked: the archive is {why}",
                      highlight=False)
        return
    what = " (decrypted; manifest authenticated)" if report.get("encrypted") else ""
    console.print(f"[green]OK[/] {escape(report['uri'])}: {report['filesChecked']} files, "
                  f"{report['recordsChecked']:,} records, {report['bytesChecked']:,} bytes verified{what}")


def inspect(
    ctx: typer.Context,
    src: str = typer.Argument(..., help="Archive folder or storage URI (with --host: on the server)."),
    endpoint_url: str = typer.Option(None, "--endpoint-url", envvar="AWS_ENDPOINT_URL",
                                     help="S3-compatible endpoint."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Show an archive's manifest (reads only the manifest; use verify to check data)."""
    m = _report(ctx, src, endpoint_url, "inspect")
    if as_json:
        emit_json(m)
        return
    s = m["source"]
    head = [("export id", m.get("export_id")), ("created", m.get("created_at")), ("spruce", m.get("spruce_version")),
            ("index", f"{s.get('index')} ({s.get('vector_type')}, dimension {s.get('dimension')}, "
                      f"{s.get('metric')})"),
            ("consistency", m.get("consistency")), ("snapshot", m.get("snapshot")), ("selection", m.get("selection")),
            ("data", f"{m['data'].get('format')} / {m['data'].get('compression')}")]
    enc = m.get("encryption")
    if enc:
        head.append(("encryption", f"{enc['algorithm']}, {enc['key']['kind']} (fingerprint "
                                   f"{enc['key']['fingerprint']}), segments of {enc['segment_size']:,} bytes"))
    emit_fields(head, title=f"archive {src}")
    rows = [(ns["name"] or "__default__", ns["dir"], f"{ns['record_count']:,}", str(len(ns["files"])),
             f"{sum(f['bytes'] for f in ns['files']):,}") for ns in m["namespaces"]]
    t = m.get("totals") or {}
    rows.append(("total", "", f"{t.get('records', 0):,}", str(t.get("files", 0)), f"{t.get('bytes', 0):,}"))
    emit_table(("namespace", "folder", "records", "files", "bytes"), rows)


verify.__doc__ = VERIFY_HELP
