"""What every command shares: global options, the client, and error output."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from spruce.errors import SpruceError

# soft_wrap: rich never breaks a line of ours; a terminal wraps it visually, and a pipe or log
# keeps whole tokens (paths, URLs, ids) on one line
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


@dataclass
class GlobalOptions:
    data: str | None = None
    #: URL of a spruce server (``--host``/SPRUCE_HOST): commands then work against it, not --data
    host: str | None = None
    api_key: str | None = None


#: The Python spellings that lower layers put in messages, and the flag a CLI user types instead.
_CLI_WORDS = (
    (re.compile(r"\s*\((?:allow_empty|allow_metric_change|overwrite|supersede)=True\)"), ""),
    (re.compile(r"pass (\w+)=True \((--[\w-]+)\)"), r"pass \2"),
    (re.compile(r"\b(overwrite|supersede|allow_metric_change|allow_remote)=True\b"),
     lambda m: "--" + m.group(1).replace("_", "-")),
    (re.compile(r"\bpass allow_remote\b"), "pass --allow-remote"),
    (re.compile(r"\bpass (dimension|metric|namespace)=(?=\W|$)"), r"pass --\1"),
    (re.compile(r"\(on_conflict='(\w+)'\)"), r"(--on-conflict \1)"),
    (re.compile(r"\bon_conflict='(\w+)'"), r"--on-conflict \1"),
    (re.compile(r"\berror_mode='(\w+)'"), r"--error-mode \1"),
)


def cli_words(message: str) -> str:
    """A lower layer's message in the CLI's terms: ``--overwrite``, not ``overwrite=True``."""
    for pattern, repl in _CLI_WORDS:
        message = pattern.sub(repl, message)
    return message


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr, in the CLI's words, and the exit code (1: failure, 2: usage)."""
    err_console.print(f"[bold red]error:[/] {escape(cli_words(message))}", highlight=False, soft_wrap=True)
    sys.exit(code)


def client(ctx: typer.Context) -> Any:
    """The client for the options given: embedded on --data."""
    from spruce.client import Client
    from spruce.engine.engine import DataDirLocked

    opts: GlobalOptions = ctx.obj or GlobalOptions()
    if opts.host:  # a server's client (--host): same methods, the server does the work
        try:
            return Client(host=opts.host, api_key=opts.api_key)
        except SpruceError as exc:
            fail(str(exc))
    try:
        return Client(data_dir=opts.data, resume_jobs=False)
    except DataDirLocked as exc:
        fail(locked_message(exc))
    except SpruceError as exc:
        fail(str(exc))
    except OSError as exc:  # e.g. the data folder cannot be created
        fail(f"cannot open data folder {opts.data or '(default)'}: {exc.strerror or exc}")


def locked_message(exc: Any) -> str:
    """The busy-folder error, with the way forward for a command line."""
    tail = (f"; follow its job with `spruce jobs show {exc.job}`, or wait for it to finish" if exc.job
            else "; stop it, or let one `spruce serve --data DIR` own the folder and run commands with --host URL")
    return exc.bare + tail


def emit_fields(fields: Iterable[tuple[str, Any]], *, title: str | None = None) -> None:
    """A record as one ``field value`` line per field: aligned (bold names) on a terminal,
    tab-separated when piped. Each value stays one logical line, never cut or folded by us,
    so a URL or path copies whole."""
    rows = [(k, "" if v is None else v if isinstance(v, str) else json.dumps(v, default=str))
            for k, v in fields]
    if not console.is_terminal:
        if title:
            print(f"# {title}")
        for k, v in rows:
            print(f"{k}\t{v}")
        return
    if title:
        console.print(f"[bold]{escape(title)}[/]")
    width = max((len(k) for k, _ in rows), default=0)
    for k, v in rows:
        console.print(f"[bold]{escape(k.ljust(width))}[/]  {escape(v)}", highlight=False)


def emit_table(columns: Sequence[str], rows: Iterable[Sequence[str]], *, fold: Sequence[str] = (),
               title: str | None = None) -> None:
    """Print a table. On a terminal, a rich table in which only the ``fold`` columns may wrap
    (ids, URIs and paths never do); piped or logged, one tab-separated line per row under a
    header line, never wrapped, so ``grep`` and ``cut`` see whole values."""
    if not console.is_terminal:
        if title:
            print(f"# {title}")
        print("\t".join(columns))
        for row in rows:
            print("\t".join(str(v) for v in row))
        return
    from rich.table import Table

    table = Table(title=escape(title) if title else None)
    for col in columns:
        table.add_column(col, no_wrap=col not in fold, overflow="fold")
    for row in rows:
        table.add_row(*(escape(str(v)) for v in row))
    console.print(table)


def emit_json(doc: Any) -> None:
    """Print one JSON document on stdout for ``--json`` (keys are documented in the README)."""
    sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


JSON_HELP = "Print one JSON document on stdout instead of text (keys: see README, \"Scripting\")."
QUIET_HELP = "No progress bar; only the final summary (or --json) is printed."


def parse_json_option(value: str | None, name: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc.msg} at column {exc.colno}", param_hint=name) from None


def detach(c: Any, job_id: str) -> None:
    """Run a persisted job in a detached worker process, so --no-wait outlives this command.

    The worker owns the data folder until the job ends; meanwhile other commands on the
    same folder are refused (use ``spruce serve`` and --host for concurrent access), except
    ``jobs list/show/cancel``, which work on the job files. The worker waits for the folder
    if another command holds it as it starts.
    """
    import subprocess

    from spruce.engine.engine import WORKER_JOB_ENV

    if getattr(c, "remote", False):  # --host: the job already runs on the server
        return
    data_dir = str(c.engine.data_dir)
    log = c.jobs.store.side_file(job_id, ".log")
    c.close()  # the worker takes the folder's lock
    with os.fdopen(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as out:
        subprocess.Popen(
            [sys.executable, "-m", "spruce", "--data", data_dir, "jobs", "resume", job_id, "--quiet",
             "--wait-lock", "60"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
            env={**os.environ, WORKER_JOB_ENV: job_id},  # a busy-folder error names the job
        )


def launch(c: Any, start_remote: Any, start_local: Any, *, no_wait: bool, as_json: bool = False) -> str | None:
    """Start a job and return its id to follow, or print the id and return None for --no-wait.

    With --host the server runs the job (``start_remote()`` returns its id; None for jobs that
    only run in this process, whose commands refuse --host); embedded, the job is persisted by
    ``start_local(run=...)`` and, for --no-wait, handed to a detached worker.
    """
    if getattr(c, "remote", False):
        job_id = start_remote()
    else:
        job_id = start_local(run=not no_wait).id
        if no_wait:
            detach(c, job_id)
    if no_wait:
        if as_json:
            emit_json({"id": job_id})
        else:
            print(job_id)
        return None
    return job_id
