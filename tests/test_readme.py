"""Every code block in the README runs as written.

Python blocks run in a subprocess: the embedded ones in a fresh folder, the ones that talk to a
server (they read SPRUCE_HOST) against a real uvicorn server with an API key. Shell blocks run in
order with bash (``set -euo pipefail``) in one folder, with ``spruce`` on PATH. The S3 bucket
they name is a real one on SeaweedFS, reached through the standard AWS variables. A block the
test cannot run (it serves forever, or needs a Pinecone project) must say why, in an HTML comment
``<!-- not run by tests/test_readme.py: REASON -->`` just above it; nothing is skipped silently.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from serverutil import start_server

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(r"(?:<!-- not run by tests/test_readme.py: (?P<why>[^>]+?) -->\n)?```(?P<lang>\w*)\n"
                    r"(?P<code>.*?)```", re.S)


def blocks() -> list[tuple[str, str, str | None]]:
    """(language, code, reason it is not run or None), in README order."""
    return [(m["lang"], m["code"], m["why"]) for m in _BLOCK.finditer(README.read_text())]


def test_every_block_is_run_or_says_why():
    found = blocks()
    assert len(found) >= 8
    for lang, code, why in found:
        assert lang in ("python", "sh", "bash"), (lang, code[:80])
        if why is not None:
            assert len(why.strip()) > 10, why


@pytest.fixture(scope="module")
def env(s3_server, tmp_path_factory) -> dict[str, str]:
    s3_server.create_bucket("my-bucket")
    bin_dir = str(Path(sys.executable).parent)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SPRUCE_", "AWS_", "PINECONE_"))}
    return {**base, **s3_server.env(), "PATH": f"{bin_dir}{os.pathsep}{base.get('PATH', '')}",
            "NO_COLOR": "1", "COLUMNS": "200"}


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"exit {p.returncode}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}"
    assert "Traceback" not in p.stderr
    return p


def _python_blocks(server: bool) -> list[str]:
    return [code for lang, code, why in blocks()
            if lang == "python" and why is None and ("SPRUCE_HOST" in code) == server]


def test_embedded_python_blocks(env, tmp_path):
    codes = _python_blocks(server=False)
    assert codes
    for i, code in enumerate(codes):
        folder = tmp_path / f"block{i}"
        folder.mkdir()
        p = _run([sys.executable, "-c", code], folder, env)
        if "import spruce" in code and "print(res.matches" in code:
            assert "a {'genre': 'drama'}" in p.stdout  # the query finds what the snippet upserted


def test_server_python_blocks(env, tmp_path):
    codes = _python_blocks(server=True)
    assert len(codes) >= 2
    key = secrets.token_hex(12)
    with start_server(tmp_path / "server-data", api_key=key) as server:
        server_env = {**env, "SPRUCE_API_KEY": key, "SPRUCE_HOST": server.url}
        for code in codes:
            _run([sys.executable, "-c", code], tmp_path, server_env)
        assert (tmp_path / "server-data" / "exports" / "my-embeddings-2025" / "manifest.json").is_file()


def test_shell_blocks_in_order(env, tmp_path):
    codes = [code for lang, code, why in blocks() if lang in ("sh", "bash") and why is None]
    assert len(codes) >= 3
    if any("| jq" in c for c in codes) and shutil.which("jq") is None:
        pytest.fail("jq is not installed, and a README block pipes into it")
    for code in codes:
        _run(["bash", "-c", "set -euo pipefail\n" + code], tmp_path, env)
    assert (tmp_path / "backups" / "from-s3" / "manifest.json").is_file()
    assert (tmp_path / "backups" / "nightly" / "manifest.json").is_file()
