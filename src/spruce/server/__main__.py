"""``python -m spruce.server``: run the server without the CLI (tests and benchmarks use it).

The API key is read from the environment variable named by ``--api-key-env``
(default SPRUCE_API_KEY), never from the command line, where ``ps`` would show it.
"""

from __future__ import annotations

import argparse
import os
import sys

from spruce.errors import SpruceError
from spruce.server import run_server


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spruce.server", description=__doc__)
    p.add_argument("--data", default=None, help="data folder (default: $SPRUCE_DATA or ./spruce-data)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5080)
    p.add_argument("--api-key-env", default="SPRUCE_API_KEY", help="environment variable holding the key")
    p.add_argument("--allow-remote", action="store_true")
    p.add_argument("--public-url", default=None)
    p.add_argument("--log-level", default="info")
    p.add_argument("--no-access-log", action="store_true")
    p.add_argument("--no-resume", action="store_true", help="leave jobs a previous run left unfinished Interrupted")
    args = p.parse_args(argv)
    try:
        run_server(args.data, host=args.host, port=args.port,
                   api_key=os.environ.get(args.api_key_env) or None,
                   allow_remote=args.allow_remote, public_url=args.public_url, log_level=args.log_level,
                   access_log=not args.no_access_log, auto_resume=not args.no_resume)
    except SpruceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
