"""The command line in a real subprocess: exit 0 on success, 1 with one line on stderr
(never a traceback) on failure, 2 on a usage error."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import spruce

CLI = [sys.executable, "-c", "from spruce.cli import main; main()"]


def run(*args: str, cwd=None, env_data: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SPRUCE_DATA"}
    env.update({"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"})
    if env_data is not None:
        env["SPRUCE_DATA"] = env_data
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def ok(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    return p.stdout


def failed(p: subprocess.CompletedProcess, *words: str) -> str:
    """Exit 1, exactly one line on stderr starting with 'error:', no traceback."""
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("error: "), lines[0]
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def usage(p: subprocess.CompletedProcess) -> None:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    assert "Usage" in p.stderr


def test_index_commands_and_stats(tmp_path):
    data = str(tmp_path / "data")
    out = ok(run("--data", data, "index", "create", "movies", "--dimension", "4", "--metric", "euclidean"))
    assert "movies" in out and "euclidean" in out
    ok(run("--data", data, "index", "create", "words", "--vector-type", "sparse", "--deletion-protection"))
    listing = ok(run("--data", data, "index", "list"))
    assert "movies" in listing and "words" in listing and "sparse" in listing

    client = spruce.Client(data_dir=data)  # put records in, then hand the folder back to the CLI
    idx = client.Index("movies")
    idx.upsert([(f"m{i}", [i, 0, 0, 1], {"genre": "drama" if i % 3 == 0 else "comedy"}) for i in range(30)])
    idx.upsert([("n1", [1, 1, 1, 1])], namespace="extra")
    client.engine.close()

    stats = ok(run("--data", data, "stats", "movies"))
    assert "__default__" in stats and "30" in stats and "extra" in stats and "31" in stats
    fstats = ok(run("--data", data, "stats", "movies", "--filter", '{"genre": "drama"}'))
    assert "10" in fstats and "31" not in fstats

    ok(run("--data", data, "index", "configure", "movies", "--tag", "team=search", "--tag", "weird=[/]"))
    desc = ok(run("--data", data, "index", "describe", "movies"))
    assert "dimension" in desc and "euclidean" in desc and "embedded://movies" in desc
    assert "team" in desc and "[/]" in desc  # markup in a value is shown as text, not parsed

    failed(run("--data", data, "index", "delete", "words", "--yes"), "deletion protection")
    ok(run("--data", data, "index", "configure", "words", "--deletion-protection", "disabled"))
    ok(run("--data", data, "index", "delete", "words", "--yes"))
    failed(run("--data", data, "index", "describe", "words"), "not found")
    assert not (tmp_path / "data" / "indexes" / "words").exists()


def test_data_folder_from_environment_and_default(tmp_path):
    env_dir = tmp_path / "from-env"
    ok(run("index", "create", "envidx", "-d", "2", env_data=str(env_dir)))
    assert (env_dir / "indexes" / "envidx" / "index.db").exists()
    # --data wins over SPRUCE_DATA
    flag_dir = tmp_path / "from-flag"
    ok(run("--data", str(flag_dir), "index", "create", "flagidx", "-d", "2", env_data=str(env_dir)))
    assert (flag_dir / "indexes" / "flagidx").exists() and not (env_dir / "indexes" / "flagidx").exists()
    # neither: ./spruce-data in the working directory
    ok(run("index", "create", "cwdidx", "-d", "2", cwd=tmp_path))
    assert (tmp_path / "spruce-data" / "indexes" / "cwdidx").exists()


def test_failures_are_one_line(tmp_path):
    data = str(tmp_path / "data")
    ok(run("--data", data, "index", "create", "dup", "-d", "3"))
    failed(run("--data", data, "index", "create", "dup", "-d", "3"), "already exists")
    failed(run("--data", data, "stats", "dup", "--filter", '{"$foo": 1}'), "$foo")
    (tmp_path / "a-file").write_text("not a folder")
    cases = [  # each in its own data folder, so they can run side by side
        (("index", "create", "Bad_Name", "-d", "3"), ("invalid index name",)),
        (("index", "create", "a[/]b", "-d", "3"), ("a[/]b",)),  # not eaten as rich markup
        (("index", "create", "nodim"), ("dimension",)),
        (("index", "create", "sp", "--vector-type", "sparse", "-m", "cosine"), ("dotproduct",)),
        (("index", "delete", "missing", "--yes"), ("not found",)),
        (("stats", "missing"), ("not found",)),
    ]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda kc: run("--data", str(tmp_path / f"d{kc[0]}"), *kc[1][0]),
                                enumerate(cases)))
        results.append(pool.submit(run, "--data", str(tmp_path / "a-file" / "data"), "index", "list").result())
    cases.append(((), ("a-file",)))
    for (_, words), p in zip(cases, results, strict=True):
        failed(p, *words)


def test_locked_data_folder_is_a_clean_failure(tmp_path):
    data = str(tmp_path / "data")
    holder = spruce.Client(data_dir=data)
    try:
        failed(run("--data", data, "index", "create", "x", "-d", "2"), "in use")
        ok(run("--data", data, "index", "list"))  # reporting reads the files: it works beside the holder
    finally:
        holder.engine.close()
    ok(run("--data", data, "index", "create", "x", "-d", "2"))


def test_usage_errors_exit_2(tmp_path):
    cases = [
        ("index", "frobnicate"),
        ("index", "create"),  # missing name
        ("index", "create", "x", "--dimension", "abc"),
        ("index", "create", "big", "-d", "20001"),  # the range the help shows
        ("stats",),
        ("stats", "x", "--filter", "{not json"),
        ("--no-such-flag", "index", "list"),
        ("index", "configure", "x", "--tag", "novalue"),
    ]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda kc: run("--data", str(tmp_path / f"d{kc[0]}"), *kc[1]), enumerate(cases)))
    for args, p in zip(cases, results, strict=True):
        assert p.returncode == 2, (args, p.returncode, p.stdout, p.stderr)
        usage(p)
