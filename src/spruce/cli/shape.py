"""The command line's shape, applied once to the whole command tree.

Why here and not per command: one place decides how every command reads, so help and
argument order cannot drift apart between command groups.

* Global options (``--data``, ``--host``, ``--api-key``) work before or after the command.
* Arguments are shown as ``SRC``, ``DEST``, ``INDEX`` ... everywhere; flags carry no type
  placeholder, and valued options show a plain one (``TEXT``, ``N``).
* Help paragraphs reflow to the terminal: a docstring's hard line breaks are joined, so
  rich never breaks a sentence where the source file did. Lists (lines starting ``- `` or
  ``* ``) and indented lines keep their breaks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

#: Options of the ``spruce`` group itself; ``spruce serve`` has options of its own by these names.
GLOBAL_OPTIONS = ("--data", "--host", "--api-key")
_OWN_GLOBALS = frozenset({"serve"})


def hoist_globals(argv: Sequence[str]) -> list[str]:
    """Move global options given after the command to just before it.

    ``spruce stats t4 --data X`` becomes ``spruce --data X stats t4``. Everything after a
    ``--`` is left alone, and so is ``serve``, whose own --data/--host/--api-key differ.
    """
    args = list(argv)
    i = 0
    while i < len(args):  # the command: the first word that is not an option or an option's value
        a = args[i]
        if a == "--":
            return args
        if a in GLOBAL_OPTIONS:
            i += 2
        elif a.startswith("-"):
            i += 1
        else:
            break
    if i >= len(args) or args[i] in _OWN_GLOBALS:
        return args
    moved: list[str] = []
    rest: list[str] = []
    j = i + 1
    while j < len(args):
        a = args[j]
        if a == "--":
            rest.extend(args[j:])
            break
        if a.split("=", 1)[0] in GLOBAL_OPTIONS:
            take = 1 if "=" in a or j + 1 == len(args) else 2
            moved.extend(args[j:j + take])
            j += take
            continue
        rest.append(a)
        j += 1
    return args[:i] + moved + [args[i]] + rest


_LIST_ITEM = re.compile(r"^\s*([-*]|\d+\.)\s")


def reflow(text: str | None) -> str | None:
    """Join each paragraph's lines into one, so the terminal (not the source file) wraps them."""
    if not text:
        return text
    head, sep, tail = text.partition("\f")
    out = []
    for para in re.split(r"\n\s*\n", head.strip("\n")):
        lines = [ln.rstrip() for ln in para.splitlines()]
        if lines and lines[0].startswith("\b"):
            out.append(para)  # click's "do not rewrap" marker
            continue
        joined: list[str] = []
        for ln in lines:
            if joined and not _LIST_ITEM.match(ln) and not ln.startswith("    "):
                joined[-1] = f"{joined[-1]} {ln.strip()}"
            else:
                joined.append(ln.strip() if not ln.startswith("    ") else ln)
        out.append("\n".join(joined))
    return "\n\n".join(out) + (sep + tail if sep else "")


_PLACEHOLDER = {"integer": "N", "integer range": "N", "float": "NUMBER", "text": "TEXT"}


def polish(command: Any) -> None:
    """Apply reflow and the argument/option display rules to ``command`` and all its subcommands.

    Duck-typed: typer ships its own copy of click, so isinstance checks against click would miss."""
    command.help = reflow(command.help)
    make_help = command.get_help_option

    def help_option(ctx: Any, make_help: Any = make_help) -> Any:  # click adds --help lazily
        opt = make_help(ctx)
        if opt is not None:
            opt.metavar = ""
        return opt

    command.get_help_option = help_option
    for sub in (getattr(command, "commands", None) or {}).values():
        polish(sub)
    for p in command.params:
        if p.param_type_name == "argument":
            name = (p.metavar or p.name or "ARG").upper()
            p.metavar = name
            shown = name if p.required else f"[{name}]"
            if p.nargs != 1:
                shown += "..."
            # typer wraps required arguments in braces on the usage line; spruce shows plain names
            p._usage_display_name = lambda shown=shown: shown
            p.display_type_rich = lambda ctx=None: None
        elif p.param_type_name == "option":
            p.help = reflow(p.help)
            if p.is_flag or getattr(p, "count", False):
                p.metavar = ""
            elif p.metavar is None:
                p.metavar = _placeholder(p)


def _placeholder(p: Any) -> str:
    """``a|b|c`` for a choice, ``N`` for a number, else ``TEXT`` (typer 0.29+ or classic click)."""
    desc = getattr(p, "type_descriptor", None)
    if desc is not None:
        if desc.is_choice:
            return "|".join(str(getattr(c, "value", c)) for c in desc.choices or ())
        inner = getattr(desc.annotation, "__args__", (desc.annotation,))[0]
        return {int: "N", float: "NUMBER"}.get(inner, "TEXT")
    kind = getattr(p, "type", None)
    if getattr(kind, "choices", None):
        return "|".join(str(c) for c in kind.choices)
    return _PLACEHOLDER.get(getattr(kind, "name", ""), "TEXT")
