"""The ``spruce`` command line: one module per command group.

Exit codes: 0 success, 1 failure (one readable line, no traceback), 2 usage error.
"""

from __future__ import annotations

import sys

import typer

from spruce.cli import export as export_cmds
from spruce.cli import index as index_cmds
from spruce.cli import jobs as jobs_cmds
from spruce.cli import restore as restore_cmds
from spruce.cli import serve as serve_cmds
from spruce.cli import stats as stats_cmds
from spruce.cli import verify as verify_cmds
from spruce.cli.common import GlobalOptions, fail
from spruce.errors import SpruceError

app = typer.Typer(
    name="spruce",
    help="Own your vector data: a Pinecone-compatible vector index with lossless, verifiable "
    "export and restore.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        from spruce import __version__

        print(f"spruce {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    data: str = typer.Option(None, "--data", envvar="SPRUCE_DATA",
                             help="Data folder of the embedded index (default ./spruce-data)."),
    host: str = typer.Option(None, "--host", envvar="SPRUCE_HOST",
                             help="URL of a spruce server (e.g. http://127.0.0.1:5080): commands work against "
                             "it instead of --data. (`spruce serve` takes its bind address as --bind.)"),
    api_key: str = typer.Option(None, "--api-key", envvar="SPRUCE_API_KEY",
                                help="API key of the server given by --host (prefer SPRUCE_API_KEY)."),
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Print spruce's version and exit."),
) -> None:
    def on_command_line(name: str) -> bool:
        source = ctx.get_parameter_source(name)
        return getattr(source, "name", None) == "COMMANDLINE"

    if host and ctx.invoked_subcommand == "serve" and on_command_line("host"):
        raise typer.BadParameter("before a command, --host is the URL of a server to talk to; to choose "
                                 "the address `spruce serve` listens on, use `spruce serve --bind ADDRESS`",
                                 param_hint="--host")
    if host and data and on_command_line("host") and on_command_line("data"):
        raise typer.BadParameter("use --data (a local folder) or --host (a server), not both", param_hint="--host")
    ctx.obj = GlobalOptions(data=data, host=None if ctx.invoked_subcommand == "serve" else host, api_key=api_key)


app.add_typer(index_cmds.app, name="index")
app.command("stats")(stats_cmds.stats)
app.command("export", help=export_cmds.HELP)(export_cmds.export)
app.command("restore", help=restore_cmds.HELP)(restore_cmds.restore)
app.add_typer(jobs_cmds.app, name="jobs")
app.command("verify", help=verify_cmds.VERIFY_HELP)(verify_cmds.verify)
app.command("inspect")(verify_cmds.inspect)
app.command("serve", help=serve_cmds.HELP)(serve_cmds.serve)
from spruce.cli import copy as _copy  # noqa: E402

app.command("copy", help=_copy.HELP)(_copy.copy)
from spruce.cli import backup as _backup  # noqa: E402
from spruce.cli import download as _download  # noqa: E402, F401  (registers `spruce download`)

app.command("backup", help=_backup.BACKUP_HELP)(_backup.backup)
app.command("snapshots", help=_backup.SNAPSHOTS_HELP)(_backup.snapshots)
app.command("forget", help=_backup.FORGET_HELP)(_backup.forget)
app.command("check", help=_backup.CHECK_HELP)(_backup.check)
from spruce.cli import key as _key  # noqa: E402

app.add_typer(_key.app, name="key")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; expected errors become one line on stderr and exit code 1."""
    from spruce.cli.shape import hoist_globals, polish

    command = typer.main.get_command(app)
    polish(command)
    try:
        command.main(args=hoist_globals(sys.argv[1:] if argv is None else argv), prog_name="spruce",
                     standalone_mode=True)
    except SpruceError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", code=130)
    except BrokenPipeError:
        sys.exit(1)
    except Exception as exc:  # a bug: still one line (SPRUCE_DEBUG=1 shows the traceback)
        import os

        if os.environ.get("SPRUCE_DEBUG"):
            raise
        fail(f"internal error (a bug in spruce; please report it): {type(exc).__name__}: {exc}")
