"""The CLI starts fast because commands import heavy libraries only when they use them.

Behavioural, not timed: each command runs in a fresh interpreter under ``-X importtime`` and
the modules it loaded are checked (bench/cli.py measures the seconds)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import spruce

HEAVY = ("pyarrow", "fastapi", "obstore", "pinecone", "jsonschema", "uvicorn", "starlette", "qdrant_client")


def _imported(*args: str, data: str) -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPRUCE_")}
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "spruce", "--data", data, *args],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    names = set()
    for line in p.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    assert names, "no -X importtime output"
    return names


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    folder = str(tmp_path_factory.mktemp("imports") / "data")
    with spruce.Client(data_dir=folder) as c:
        c.create_index("t", dimension=2)
        c.Index("t").upsert([("a", [1.0, 2.0])])
        c.Index("t").export_index(storage_path=folder + "-arc", sync=True)
    return folder


@pytest.mark.parametrize("args", [("--help",), ("--version",), ("jobs", "list"), ("jobs", "list", "--json")])
def test_light_commands_import_nothing_heavy(data: str, args: tuple[str, ...]) -> None:
    loaded = _imported(*args, data=data)
    assert not loaded & {*HEAVY, "numpy"}, sorted(loaded & {*HEAVY, "numpy"})


@pytest.mark.parametrize("args", [("index", "list"), ("stats", "t"), ("index", "describe", "t")])
def test_index_commands_import_no_server_or_sdk(data: str, args: tuple[str, ...]) -> None:
    loaded = _imported(*args, data=data)
    assert not loaded & {"fastapi", "uvicorn", "starlette", "pinecone", "obstore", "qdrant_client"}, \
        sorted(loaded & set(HEAVY))
