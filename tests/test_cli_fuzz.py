"""Every command, driven with generated arguments and bad paths, fails cleanly.

Bad input never produces a traceback or "internal error": the exit code is 2 for a usage
error and 1 for anything else, with the cause on stderr. The paths include files where
folders are expected, missing paths, a symlink loop, garbage archives, a folder of garbage,
a path under a file, unreadable files (only where this process cannot bypass permissions),
and odd unicode.
"""

from __future__ import annotations

import gzip
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.test_cli import CLI

import spruce

INDEX = "t"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("fuzz")
    data = root / "data"
    with spruce.Client(data_dir=str(data)) as c:
        c.create_index(INDEX, dimension=4)
        c.Index(INDEX).upsert([(f"r{i}", [1.0, i, 2.0, 3.0], {"k": i}) for i in range(10)])
        c.Index(INDEX).export_index(storage_path=str(root / "good-archive"), sync=True)
    (root / "a-file").write_text("plain text, not an archive")
    (root / "loop-a").symlink_to(root / "loop-b")
    (root / "loop-b").symlink_to(root / "loop-a")
    garbage = root / "garbage-archive"
    garbage.mkdir()
    (garbage / "manifest.json").write_text("{not json")
    wrong = root / "wrong-manifest"
    wrong.mkdir()
    (wrong / "manifest.json").write_text('{"format": "spruce-archive", "version": 99}')
    junk = root / "folder-of-junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("hello")
    (junk / "part-00000.jsonl.gz").write_bytes(b"not gzip at all")
    (root / "fake.jsonl.gz").write_bytes(b"\x00\x01 not gzip")
    (root / "truncated.jsonl.gz").write_bytes(gzip.compress(b'{"id": "a", "values": [1,2,3,4]}\n' * 50)[:-9])
    (root / "bad-lines.jsonl").write_text('{"id": "a", "values": [1, 2, 3, 4]}\n{"id": 5}\nnot json\n')
    (root / "fake.parquet").write_bytes(b"PAR1 nonsense")
    (root / "ünï cødé ☃ dir").mkdir()
    unreadable = root / "unreadable.jsonl"
    unreadable.write_text('{"id": "a", "values": [1, 2, 3, 4]}\n')
    unreadable.chmod(0)
    bad_paths = [str(root / p) for p in (
        "a-file", "a-file/below", "missing", "missing/deeper", "loop-a", "loop-a/x", "garbage-archive",
        "garbage-archive/manifest.json", "wrong-manifest", "folder-of-junk", "fake.jsonl.gz",
        "truncated.jsonl.gz", "bad-lines.jsonl", "fake.parquet", "ünï cødé ☃ dir", "good-archive/manifest.json",
    )] + ["/proc/nope", "/proc/self/status", "file:///nowhere/at/all", "s3://", "gs://", "az://",
          "zz://what", "", "\u202e\u200b", "-", "."]
    if os.geteuid() != 0:  # root reads anything: an unreadable file cannot be made
        bad_paths.append(str(unreadable))
    return {"root": root, "data": str(data), "bad": bad_paths, "good": str(root / "good-archive")}


_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
_NAME = _TEXT.filter(lambda s: s != INDEX)


@st.composite
def invocations(draw, world):
    bad = st.sampled_from(world["bad"]) | _TEXT
    root = world["root"]
    fresh = str(root / f"out-{draw(st.integers(0, 10**9))}")
    choice = draw(st.sampled_from([
        lambda: ["verify", draw(bad)],
        lambda: ["inspect", draw(bad)],
        lambda: ["download", draw(bad), fresh],
        lambda: ["restore", draw(bad), INDEX],
        lambda: ["restore", draw(bad), "fresh-index", "--dimension", "4"],
        lambda: ["restore", world["good"], INDEX, "--namespace-map", draw(_TEXT)],
        lambda: ["restore", world["good"], draw(_NAME)],
        lambda: ["restore", world["good"], INDEX, "--on-conflict", draw(_TEXT)],
        # any other text (and "-" or ".") is a fine place for a new archive
        lambda: ["export", INDEX, draw(st.sampled_from([b for b in world["bad"] if b not in ("-", ".")]))],
        lambda: ["export", draw(_NAME), fresh],
        lambda: ["export", INDEX, fresh, "--format", draw(_TEXT.filter(lambda s: s not in
                                                                         ("jsonl", "jsonl.gz", "parquet")))],
        lambda: ["export", INDEX, fresh, "--filter", draw(_TEXT.filter(lambda s: not s.strip().startswith("{")))],
        lambda: ["export", INDEX, fresh, "--namespace", draw(_NAME.filter(lambda s: s not in ("__default__", "")))],
        lambda: ["stats", draw(_NAME)],
        lambda: ["stats", INDEX, "--filter", draw(_TEXT.filter(lambda s: s.strip() not in ("{}", "")))],
        lambda: ["index", "describe", draw(_NAME)],
        lambda: ["index", "delete", draw(_NAME), "--yes"],
        lambda: ["index", "create", draw(_NAME), "--dimension", draw(st.sampled_from(["0", "-3", "x", "20001"]))],
        lambda: ["index", "configure", draw(_NAME), "--tag", draw(_TEXT)],
        lambda: ["jobs", "show", draw(_TEXT)],
        lambda: ["jobs", "cancel", draw(_TEXT)],
        lambda: ["jobs", "resume", draw(_TEXT)],
        lambda: ["jobs", "list", "--status", draw(_TEXT)],
        lambda: ["jobs", "prune", "--older-than", draw(_TEXT)],
        lambda: [draw(_TEXT.filter(lambda s: not s.startswith("-")))],
    ]))
    return choice()


@pytest.fixture(scope="module")
def strategy(world):
    return invocations(world)


def test_bad_arguments_never_leak_a_traceback(world, strategy):
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(strategy)
    def check(args: list[str]) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SPRUCE_", "AWS_"))}
        env.update({"COLUMNS": "120", "NO_COLOR": "1"})
        p = subprocess.run([*CLI, "--data", world["data"], *args], capture_output=True, text=True,
                           env=env, timeout=120, stdin=subprocess.DEVNULL, cwd=world["root"])
        out = p.stdout + p.stderr
        assert "Traceback" not in out and "internal error" not in out.lower(), (args, out)
        assert p.returncode in (1, 2), (args, p.returncode, out)
        assert p.stderr.strip(), (args, "a failure must say why on stderr")

    check()
    # the index the generated commands aimed at is intact: nothing was half-applied
    with spruce.Client(data_dir=world["data"]) as c:
        assert c.Index(INDEX).describe_index_stats().total_vector_count == 10


def test_known_leaks_are_one_line(world):
    """The cases issue 12 found leaking, each now one line naming the path and the cause."""
    root: Path = world["root"]  # type: ignore[assignment]
    cases = [
        (["verify", str(root / "good-archive" / "manifest.json")], 0, ()),  # the manifest stands for its folder
        (["inspect", str(root / "fake.jsonl.gz")], 1, ("fake.jsonl.gz",)),
        (["export", INDEX, str(root / "a-file")], 1, ("a-file", "is a file")),
        (["export", INDEX, "/proc/nope"], 1, ("/proc/nope",)),
        (["export", INDEX, str(root / "pq"), "--format", "parquet", "--compression-level", "2"], 2,
         ("--compression-level",)),
        (["restore", str(root / "fake.jsonl.gz"), "fresh-index", "--dimension", "4"], 1, ("fake.jsonl.gz", "gzip")),
    ]
    for args, code, words in cases:
        p = subprocess.run([*CLI, "--data", world["data"], *args], capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL)
        assert p.returncode == code, (args, p.returncode, p.stderr)
        assert "Traceback" not in p.stderr and "internal error" not in p.stderr, (args, p.stderr)
        if code == 1:
            lines = p.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), (args, p.stderr)
        for w in words:
            assert w in p.stderr, (args, w, p.stderr)
    assert not (root / "pq").exists()  # refused before anything was created
