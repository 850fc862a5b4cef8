"""``spruce download``: copy an archive into a local folder, by storage URI or signed links, and verify it.

Importing this module registers the command on ``spruce.cli.app``.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from spruce.cli import app
from spruce.cli.common import console, err_console, fail

HELP = """Download the archive at SRC into the local folder DEST, then verify it.

SRC is either a storage URI (s3://, gs://, az://, or a folder), read with your credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; --endpoint-url or AWS_ENDPOINT_URL for S3-compatible stores), or the signed manifest link of a completed export (its download_url) together with the links of its files: --links FILE (the export's download_urls as JSON, path -> URL; a job file from <data>/jobs/ works too) or --link PATH=URL (repeatable). Signed links need no credentials at all; an unsigned link to a public archive needs no --links.

Guarantees: every file the manifest lists is streamed to disk with its sha256 and size computed as it arrives, and lands in DEST (atomically: temporary file, then rename) only if both match the manifest. manifest.json is written last, only when every file matched, so DEST never looks like a whole archive when it is not. Finally the whole folder is verified as `spruce verify` does (every record decoded). Re-running resumes: files already present with the right sha256 are kept.

Exit 0 when the download verifies; 1 with one line naming the file otherwise (an expired or altered link, a checksum mismatch, a missing file).
"""


def _server_links(ctx: typer.Context, src: str) -> tuple[str, dict[str, str]] | None:
    """With --host: the signed links of the server's completed export named by SRC (its id, or the
    path it was exported to), freshly signed by the server."""
    from spruce.cli.common import GlobalOptions, client

    opts: GlobalOptions = ctx.obj or GlobalOptions()
    if not opts.host or ("://" in src and not src.startswith("file://")):
        return None
    c = client(ctx)
    want = src.rstrip("/")
    found = None
    for s in reversed(c.jobs.list("export")):
        if s.status != "Completed":
            continue
        if s.id == src or s.uri.rstrip("/") == want or s.uri.rstrip("/").endswith("/" + want.lstrip("./")):
            found = c.jobs.describe(s.id)  # freshly signed links
            break
    if found is None:
        fail(f"the server at {opts.host} has no completed export {src!r} (give its id or the path it was exported to)")
    if not found.download_url or not found.download_urls:
        fail(f"export {found.id} on {opts.host} has no download links (its archive is gone)")
    return found.download_url, dict(found.download_urls)


def download(
    ctx: typer.Context,
    src: str = typer.Argument(..., metavar="SRC", help="Storage URI or folder of the archive, or its manifest link; "
                              "with --host, an export's id or the path it was exported to on the server."),
    dest: Path = typer.Argument(..., metavar="DEST", help="Local folder to download into (created if missing)."),
    links: Path = typer.Option(None, "--links", help="JSON file mapping archive path -> signed URL "
                               "(the export's download_urls)."),
    link: list[str] = typer.Option(None, "--link", help="PATH=URL for one file (repeatable)."),
    endpoint_url: str = typer.Option(None, "--endpoint-url", envvar="AWS_ENDPOINT_URL",
                                     help="S3-compatible endpoint for s3:// sources."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a different archive already in DEST."),
    parallel: int = typer.Option(4, "--parallel", min=1, max=64, help="Files fetched at once."),
    timeout: float = typer.Option(60.0, "--timeout", min=1.0, help="Seconds without progress before a link "
                                  "request fails (it is retried)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TransferSpeedColumn,
    )

    from spruce.archive.download import download_archive, is_link, load_links

    link_map: dict[str, str] = {}
    via_server = _server_links(ctx, src)
    if via_server is not None:  # --host: follow the export's own (signed) links
        src, link_map = via_server
    if links is not None:
        link_map.update(load_links(links))
    for item in link or []:
        path, sep, url = item.partition("=")
        if not sep or not path or not url:
            raise typer.BadParameter(f"{item.split('?', 1)[0]!r} is not PATH=URL", param_hint="--link")
        link_map[path] = url
    if link_map and not is_link(src):
        raise typer.BadParameter("--links/--link go with a manifest link (https://...), not a storage URI",
                                 param_hint="SRC")
    storage = {"endpoint_url": endpoint_url} if endpoint_url and src.startswith("s3://") else None

    progress = Progress(
        TextColumn("[bold]download"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeElapsedColumn(),
        console=err_console, transient=True, disable=quiet or not err_console.is_terminal,
    )
    task = progress.add_task("download", total=None)
    try:
        with progress:
            report = download_archive(
                src, dest, links=link_map or None, storage_options=storage, overwrite=overwrite,
                parallel=parallel, timeout=timeout,
                on_manifest=lambda m: progress.update(task, total=m.totals["bytes"]),
                on_progress=lambda n: progress.advance(task, n),
            )
    except OSError as exc:  # the local folder: permissions, disk full
        fail(f"{dest}: {exc.strerror or exc}")
    reused = f" ({report.files_reused} already present)" if report.files_reused else ""
    console.print(
        f"[green]OK[/] {escape(report.source)} -> {escape(str(dest))}: {report.files} files{reused}, "
        f"{report.records:,} records, {report.bytes:,} bytes, verified (export {report.manifest.export_id})",
        soft_wrap=True,
    )


download.__doc__ = HELP
app.command("download", help=HELP)(download)
