"""``spruce serve``: Pinecone's REST API (and spruce's jobs, backups and downloads) over a data folder."""

from __future__ import annotations

import typer

from spruce.cli.common import GlobalOptions, fail, locked_message

HELP = """Serve the indexes of a data folder over Pinecone's REST API, so the official pinecone SDK
(7.3, 9.x, 10.x), `spruce --host URL ...` and `spruce.Client(host=...)` can all use them at once.

Example: `SPRUCE_API_KEY=... spruce serve --data ./spruce-data --port 5080`, then in Python
`Pinecone(api_key="...", host="http://127.0.0.1:5080")`.

Guarantees:

* With an API key (--api-key or, better, SPRUCE_API_KEY: a command line is visible to `ps`), every
  endpoint needs it in the Api-Key header (constant-time check; the key never reaches a log or an
  error message), except /health and signed download links, which carry their own HMAC signature
  and expiry instead (so `curl` can fetch them; a changed or expired link is a 403).
* Without a key the server binds to loopback only: a non-loopback --bind is refused unless
  --allow-remote says you accept that anyone who can reach the port can read and delete everything.
* Server-side storage paths in requests (imports, exports) must resolve, symlinks and `..` followed,
  inside a storage root: --storage-root (repeatable; default DATA/exports) or the backup folder.
  Anything else is refused with 403. Relative paths land in the first root.
* Backups (Pinecone's backup API) are spruce archives in --backup-dir (default DATA/backups).
* Export and import jobs run on the server, which owns them: jobs a previous run left unfinished
  are resumed at start, one line each on stderr (an export from a fresh snapshot, an import after
  its last committed file), unless --no-resume. A job whose index was written after it stopped is
  never resumed: it becomes Superseded. Stopping the server leaves running jobs Interrupted. Credentials never
  appear in job status or logs: the server reads object stores with its own environment's.
* Scheduled backups (--config spruce.toml, a "schedule" table per backup: index, repository, cron and
  optional full_every, format, tags, keep_* retention): one backup job per due time (cron in UTC,
  listed by `spruce jobs list` with its progress; runs missed while the server was down are not
  made up). Retention (forget --prune of that index's snapshots, chains spared) runs only after a
  successful backup. A failed backup is retried with backoff (30 s, 60 s, 120 s) and never followed
  by a forget: earlier snapshots stay untouched. `GET /schedules` reports each schedule's last run.
  A bad config is one error line and no server.
* Download links of local exports are signed with a key kept in DATA/.server-secret (mode 0600,
  created on first start) unless SPRUCE_SIGNING_KEY is set.

The bind address is --bind (alias --listen; --host is accepted here too). Before the command,
`spruce --host URL` means the opposite: the URL of a server for the client commands.
"""


def serve(
    ctx: typer.Context,
    data: str = typer.Option(None, "--data", help="Data folder (default: spruce --data, $SPRUCE_DATA or "
                             "./spruce-data)."),
    bind: str = typer.Option("127.0.0.1", "--bind", "--listen", "--host",
                             help="Address to listen on. Non-loopback needs an API key (or --allow-remote)."),
    port: int = typer.Option(5080, "--port", "-p", min=1, max=65535, help="TCP port."),
    api_key: str = typer.Option(None, "--api-key", envvar="SPRUCE_API_KEY", show_envvar=True,
                                help="Required in the Api-Key header of every request. Prefer the "
                                "environment variable: a command line is visible to other users."),
    backup_dir: str = typer.Option(None, "--backup-dir", envvar="SPRUCE_BACKUP_DIR",
                                   help="Where backups are kept: a folder or s3:// gs:// az:// URI "
                                   "(default DATA/backups)."),
    storage_root: list[str] = typer.Option(None, "--storage-root",
                                           help="A folder (or object-store prefix) that server-side storage "
                                           "paths must stay inside; repeatable (default DATA/exports)."),
    allow_remote: bool = typer.Option(False, "--allow-remote",
                                      help="Allow a non-loopback bind without an API key (unsafe)."),
    public_url: str = typer.Option(None, "--public-url", help="Base URL clients reach this server at, "
                                   "behind a proxy (used in index hosts and download links)."),
    public_docs: bool = typer.Option(False, "--public-docs", help="Serve /docs without the API key."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level."),
    no_resume: bool = typer.Option(False, "--no-resume", help="Leave jobs a previous run left unfinished "
                                   "Interrupted instead of resuming them (`spruce jobs resume ID` later)."),
    config: str = typer.Option(None, "--config", help="TOML file of scheduled backups (schedule tables). "
                               "One backup job per due time; retention only after a successful backup; a failed "
                               "backup is retried with backoff and leaves earlier snapshots untouched."),
    signing_key: str = typer.Option(None, "--signing-key", envvar="SPRUCE_SIGNING_KEY", hidden=True,
                                    help="Key for signed download links (default: DATA/.server-secret)."),
) -> None:
    import errno
    import socket

    from spruce.engine.engine import DataDirLocked, Engine
    from spruce.errors import SpruceError
    from spruce.server import UnsafeBind, is_loopback, open_listener, run_server

    schedules = None
    if config is not None:  # first: a bad config is one line, before anything is bound or opened
        from spruce.server.schedules import load_config

        try:
            schedules = load_config(config)
        except SpruceError as exc:
            fail(str(exc))
        _log_schedules_to_stderr()
    opts: GlobalOptions = ctx.obj or GlobalOptions()
    data_dir = data or opts.data
    key = api_key or opts.api_key
    # every check before the "serving" line: address, key policy, data folder, port
    if not key and not is_loopback(bind) and not allow_remote:
        fail(str(UnsafeBind(f"refusing to serve on {bind} without an API key: anyone who can reach it could read "
                            "and delete every index. Set SPRUCE_API_KEY, bind to 127.0.0.1, or pass --allow-remote")))
    try:
        sock = open_listener(bind, port)
    except socket.gaierror as exc:
        fail(f"cannot listen on --bind {bind}: not an address of this machine ({exc.strerror or exc})")
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            fail(f"port {port} on {bind} is already in use: stop what listens there, or pass --port")
        fail(f"cannot listen on {bind}:{port}: {exc.strerror or exc}")
    try:
        engine = Engine.open(data_dir)
    except DataDirLocked as exc:
        sock.close()
        fail(locked_message(exc))
    except OSError as exc:
        sock.close()
        fail(f"cannot open data folder {data_dir or './spruce-data'}: {exc.strerror or exc}")
    host = f"[{bind.strip('[]')}]" if ":" in bind else bind
    typer.echo(f"spruce serving {engine.data_dir} on http://{host}:{port} "
               f"({'API key required' if key else 'no API key: loopback only'}"
               f"{f'; {len(schedules)} backup schedule(s)' if schedules is not None else ''})", err=True)
    try:
        run_server(engine, host=bind, port=port, api_key=key or None, allow_remote=allow_remote,
                   public_url=public_url, public_docs=public_docs, log_level=log_level,
                   backup_uri=backup_dir, storage_roots=storage_root or None, signing_key=signing_key,
                   auto_resume=not no_resume, sock=sock, schedules=schedules)
    except OSError as exc:
        fail(f"cannot serve on {bind}:{port}: {exc.strerror or exc}")
    finally:
        sock.close()
        engine.close()


def _log_schedules_to_stderr() -> None:
    """One line per scheduled run on stderr, as the server's other lines ("spruce: ...")."""
    import logging

    logger = logging.getLogger("spruce.schedules")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("spruce: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


serve.__doc__ = HELP
