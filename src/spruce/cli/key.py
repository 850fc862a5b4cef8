"""``spruce key generate FILE`` and ``spruce key fingerprint FILE``: archive key files.

A key file holds exactly 32 random bytes: the key of ``spruce export/backup --encrypt
--key-file FILE``. It is written with mode 0600 and never over an existing file (a key
overwritten is every archive made with it lost). The key itself is never printed; its
fingerprint (the one encrypted manifests name) is.
"""

from __future__ import annotations

import os
from typing import Any

import typer

from spruce.cli.common import JSON_HELP, console, emit_json, fail

app = typer.Typer(help="Archive encryption keys: make a key file, show a key file's fingerprint.",
                  no_args_is_help=True)

GENERATE_HELP = """Write a new random archive key (32 bytes) to FILE, readable by you only (mode 0600).

Refuses to overwrite FILE. Use it with `spruce export ... --encrypt --key-file FILE` and
`spruce backup ... --encrypt --key-file FILE`, and keep a copy somewhere safe: an archive
encrypted with it cannot be read without it. Prints the key's fingerprint, which the
manifests of archives encrypted with it name.
"""


@app.command("generate", help=GENERATE_HELP)
def generate(
    file: str = typer.Argument(..., help="The key file to create (must not exist)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    from spruce.archive.keys import generate_key_file

    path = os.path.abspath(file)
    try:
        fp = generate_key_file(path)
    except FileExistsError:
        fail(f"{path} already exists: a key file is never overwritten (every archive encrypted with the old key "
             "would become unreadable); choose another file, or remove this one yourself")
    except OSError as exc:
        fail(f"cannot create the key file {path}: {exc.strerror or exc}")
    if as_json:
        emit_json({"path": path, "fingerprint": fp})
        return
    console.print(f"wrote a new archive key to {path} (mode 0600), fingerprint {fp}", highlight=False)
    console.print("keep a copy in a safe place: archives encrypted with it cannot be read without it",
                  highlight=False)


@app.command("fingerprint")
def fingerprint(
    file: str = typer.Argument(..., help="A key file."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Print a key file's fingerprint (as encrypted manifests name it), never the key."""
    from spruce.archive.keys import ArchiveKey

    key = ArchiveKey.from_file(file)
    fp = key.key_file_fingerprint
    if as_json:
        emit_json({"path": key.key_file, "fingerprint": fp})
        return
    print(fp)


# -- the options of commands that encrypt or decrypt ------------------------------------------

ENCRYPT_HELP = ("Encrypt every data file (AES-256-GCM) before it leaves this process, with --key-file FILE or "
                "the passphrase in SPRUCE_ARCHIVE_PASSPHRASE. The manifest stays readable (and checkable "
                "without the key); Pinecone's bulk import cannot read an encrypted archive.")
KEY_FILE_HELP = ("Archive key file (32 bytes; make one with `spruce key generate FILE`). Without it, the "
                 "passphrase in SPRUCE_ARCHIVE_PASSPHRASE is used. Keys are never taken as a flag value.")


def writing_key(encrypt: bool, key_file: str | None, *, remote: bool = False) -> Any:
    """The key an encrypting command writes with: the key file when given, else the passphrase in
    the environment; None without --encrypt."""
    from spruce.archive.keys import PASSPHRASE_ENV, ArchiveKey

    if not encrypt:
        if key_file:
            raise typer.BadParameter("a key file is used to encrypt only with --encrypt", param_hint="--key-file")
        return None
    if remote:
        fail("--encrypt runs in this process (the key never leaves it): drop --host")
    if key_file:
        return ArchiveKey.from_file(key_file)
    key = ArchiveKey.from_env()
    if key is None:
        fail(f"--encrypt needs a key: --key-file FILE (make one with `spruce key generate FILE`), or a passphrase "
             f"in {PASSPHRASE_ENV}")
    return key


def reading_key(key_file: str | None) -> Any:
    """The key(s) a reading command has: --key-file and/or SPRUCE_ARCHIVE_PASSPHRASE (the archive's
    manifest says which one it needs); None when neither is given."""
    from spruce.archive.keys import ArchiveKey

    return ArchiveKey.from_env(key_file)
