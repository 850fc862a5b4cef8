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


@app.callback()
def _root(
    ctx: typer.Context,
    data: str = typer.Option(None, "--data", envvar="SPRUCE_DATA",
                             help="Data folder of the embedded index (default ./spruce-data)."),
) -> None:
    ctx.obj = GlobalOptions(data=data)


app.add_typer(index_cmds.app, name="index")
app.command("stats")(stats_cmds.stats)
app.command("export", help=export_cmds.HELP)(export_cmds.export)
app.command("restore", help=restore_cmds.HELP)(restore_cmds.restore)
app.add_typer(jobs_cmds.app, name="jobs")
app.command("verify", help=verify_cmds.VERIFY_HELP)(verify_cmds.verify)
app.command("inspect")(verify_cmds.inspect)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; expected errors become one line on stderr and exit code 1."""
    try:
        app(args=argv, standalone_mode=True)
    except SpruceError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", code=130)
    except BrokenPipeError:
        sys.exit(1)
