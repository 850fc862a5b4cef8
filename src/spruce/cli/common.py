"""What every command shares: global options, the client, and error output."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any, NoReturn

import typer
from rich.console import Console

from spruce.errors import SpruceError

console = Console()
err_console = Console(stderr=True)


@dataclass
class GlobalOptions:
    data: str | None = None


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    sys.exit(code)


def client(ctx: typer.Context) -> Any:
    """The client for the options given: embedded on --data."""
    from spruce.client import Client

    opts: GlobalOptions = ctx.obj or GlobalOptions()
    try:
        return Client(data_dir=opts.data)
    except SpruceError as exc:
        fail(str(exc))


def parse_json_option(value: str | None, name: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc.msg} at column {exc.colno}", param_hint=name) from None
