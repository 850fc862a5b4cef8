"""The CLI as a script sees it: global options anywhere, --json documents, --quiet, --version,
consistent help, ranges that match the checks, confirmation for deletes, and CLI words in errors."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest
from tests.test_cli import failed, ok, run, usage

import spruce
from spruce.cli.progress import check_completed
from spruce.cli.shape import hoist_globals, reflow

DIM = 4


@pytest.fixture()
def data(tmp_path):
    """A data folder with index 'films': 20 records in 'docs' and 5 in the default namespace."""
    folder = str(tmp_path / "data")
    with spruce.Client(data_dir=folder) as c:
        c.create_index("films", dimension=DIM, metric="cosine")
        idx = c.Index("films")
        idx.upsert([(f"d{i}", [1.0, i, 0.5, 0.25], {"n": i}) for i in range(20)], namespace="docs")
        idx.upsert([(f"x{i}", [0.5, 1.0, i, 1.0]) for i in range(5)])
    return folder


def _json(p) -> dict:
    out = ok(p)
    return json.loads(out)  # exactly one document: json.loads refuses trailing text


def test_global_options_after_the_command(data):
    assert "films" in ok(run("stats", "films", "--data", data))
    assert "films" in ok(run("index", "list", f"--data={data}"))
    assert "films" in ok(run("index", "describe", "films", "--data", data))
    ok(run("jobs", "list", "--data", data))


def test_hoist_globals_leaves_serve_and_separators_alone():
    assert hoist_globals(["stats", "t", "--data", "D"]) == ["--data", "D", "stats", "t"]
    assert hoist_globals(["--host", "H", "jobs", "list", "--api-key=k"]) == ["--host", "H", "--api-key=k",
                                                                           "jobs", "list"]
    assert hoist_globals(["serve", "--data", "D", "--host", "::1"]) == ["serve", "--data", "D", "--host", "::1"]
    assert hoist_globals(["restore", "--", "--data"]) == ["restore", "--", "--data"]


def test_version():
    assert ok(run("--version")).strip() == f"spruce {spruce.__version__}"


def test_json_documents(data, tmp_path):
    arc = str(tmp_path / "arc")
    doc = _json(run("--data", data, "export", "films", arc, "--json"))
    assert doc["status"] == "Completed" and doc["recordsExported"] == 25 and doc["kind"] == "export"
    job = doc["id"]
    shown = _json(run("--data", data, "jobs", "show", job, "--json"))
    assert shown["id"] == job and shown["status"] == "Completed"
    listed = _json(run("--data", data, "jobs", "list", "--json"))
    assert [j["id"] for j in listed["jobs"]] == [job]
    restored = _json(run("--data", data, "restore", arc, "copy", "--json"))
    assert restored["status"] == "Completed" and restored["recordsImported"] == 25 and restored["index"] == "copy"
    stats = _json(run("--data", data, "stats", "copy", "--json"))
    assert stats == {"index": "copy", "dimension": DIM, "metric": "cosine", "state": "Ready",
                     "namespaces": {"docs": {"vectorCount": 20}, "__default__": {"vectorCount": 5}},
                     "totalVectorCount": 25}
    indexes = _json(run("--data", data, "index", "list", "--json"))
    assert sorted(i["name"] for i in indexes["indexes"]) == ["copy", "films"]
    described = _json(run("--data", data, "index", "describe", "films", "--json"))
    assert described["name"] == "films" and described["dimension"] == DIM


def test_json_on_failure_still_one_document_and_exit_1(data, tmp_path):
    arc = tmp_path / "arc"
    ok(run("--data", data, "export", "films", str(arc)))
    part = next(arc.rglob("part-*"))
    part.write_bytes(part.read_bytes()[:-1] + bytes([part.read_bytes()[-1] ^ 1]))
    p = run("--data", data, "restore", str(arc), "copy", "--json")
    assert p.returncode == 1
    doc = json.loads(p.stdout)
    assert doc["status"] == "Failed" and "sha256" in doc["error"]


def test_quiet_prints_only_the_summary(data, tmp_path):
    p = run("--data", data, "export", "films", str(tmp_path / "arc"), "--quiet")
    out = ok(p)
    assert p.stderr == "" and "exported 25 records" in out


def test_uncompressed_jsonl_round_trip(data, tmp_path):
    arc = tmp_path / "arc"
    ok(run("--data", data, "export", "films", str(arc), "--format", "jsonl"))
    parts = sorted(p.name for p in arc.rglob("part-*"))
    assert parts and all(name.endswith(".jsonl") for name in parts)
    assert json.loads((arc / "manifest.json").read_text())["data"]["format"] == "jsonl"
    ok(run("--data", data, "verify", str(arc)))
    ok(run("--data", data, "restore", str(arc), "copy"))
    with spruce.Client(data_dir=data) as c:
        a, b = c.Index("films"), c.Index("copy")
        for ns in ("docs", ""):
            ids = [f"d{i}" for i in range(20)] if ns else [f"x{i}" for i in range(5)]
            assert a.fetch(ids, namespace=ns).vectors == b.fetch(ids, namespace=ns).vectors


def test_help_names_and_reflow():
    for cmd in (("export",), ("restore",), ("verify",), ("stats",), ("jobs", "show"), ("index", "delete")):
        out = ok(run(*cmd, "--help"))
        assert "<str>" not in out and "<bool>" not in out and "<int>" not in out, out
        assert not re.search(r"\{[a-z_]+\}", out), out  # no {src} {index} on the usage line
    out = ok(run("export", "--help"))
    assert "Usage: spruce export [OPTIONS] INDEX DEST" in out
    out = ok(run("restore", "--help"))
    assert "Usage: spruce restore [OPTIONS] SRC INDEX" in out
    # COLUMNS=250: a sentence the docstring broke across two source lines reads as one line
    assert "so a damaged archive changes nothing" in out


def test_reflow_keeps_paragraphs_and_lists():
    text = "First line\ncontinues here.\n\nSecond paragraph\nalso joined.\n\n- item one\n  more\n- item two"
    assert reflow(text) == ("First line continues here.\n\nSecond paragraph also joined.\n\n"
                            "- item one more\n- item two")


def test_ranges_match_the_checks(data, tmp_path):
    usage(run("--data", data, "export", "films", str(tmp_path / "a"), "--compression-level", "5"))
    usage(run("--data", data, "export", "films", str(tmp_path / "b"), "--format", "parquet",
              "--compression-level", "2"))
    usage(run("--data", data, "export", "films", str(tmp_path / "c"), "--format", "csv"))
    usage(run("--data", data, "index", "configure", "films", "--deletion-protection", "maybe"))
    assert not (tmp_path / "b").exists()  # refused before anything was created
    help_text = ok(run("export", "--help"))
    assert "0<=x<=3" in help_text


def test_index_delete_needs_yes_without_a_terminal(data):
    usage(run("--data", data, "index", "delete", "films"))
    assert "films" in ok(run("--data", data, "index", "list"))  # nothing deleted
    ok(run("--data", data, "index", "delete", "films", "--yes"))
    assert "films" not in ok(run("--data", data, "index", "list"))


def test_cancel_of_an_ended_job_exits_1(data, tmp_path):
    doc = _json(run("--data", data, "export", "films", str(tmp_path / "arc"), "--json"))
    failed(run("--data", data, "jobs", "cancel", doc["id"]), "already ended", "Completed")
    assert _json(run("--data", data, "jobs", "show", doc["id"], "--json"))["status"] == "Completed"


def test_a_cancelled_job_says_who_cancelled_it(capsys):
    with pytest.raises(SystemExit) as exit_:
        check_completed(SimpleNamespace(status="Cancelled", error=None, reason=None), "export", "exp-1")
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert "export exp-1 cancelled by the user" in err and "no error recorded" not in err


def test_errors_name_cli_flags_not_python_arguments(data, tmp_path):
    arc = str(tmp_path / "arc")
    ok(run("--data", data, "export", "films", arc))
    line = failed(run("--data", data, "export", "films", arc), "--overwrite")
    assert "overwrite=True" not in line
    with spruce.Client(data_dir=data) as c:
        c.create_index("euclid", dimension=DIM, metric="euclidean")
    line = failed(run("--data", data, "restore", arc, "euclid"), "--allow-metric-change")
    assert "allow_metric_change" not in line


def test_piped_output_keeps_long_paths_and_urls_whole(data, tmp_path):
    deep = tmp_path.joinpath(*[f"level-{i:02d}-of-a-long-archive-path" for i in range(12)])
    assert len(str(deep)) > 300  # longer than COLUMNS=250 that run() sets
    out = ok(run("--data", data, "export", "films", str(deep)))
    download = [ln for ln in out.splitlines() if "download:" in ln]
    assert len(download) == 1 and download[0].endswith(f"{deep.as_uri()}/manifest.json"), out
    job = out.split("export id ")[1].split(";")[0]
    listed = ok(run("--data", data, "jobs", "list")).splitlines()
    assert listed[0].split("\t")[0] == "id" and listed[1].split("\t")[0] == job
    assert listed[1].split("\t")[-1] == deep.as_uri()
    shown = dict(line.split("\t", 1) for line in ok(run("--data", data, "jobs", "show", job)).splitlines())
    assert shown["id"] == job and shown["uri"] == deep.as_uri() and json.loads(shown["options"])["format"] == "jsonl.gz"
