"""Selective restores (--namespace, --ids-file, --filter) and dry runs, against a brute-force reference.

The reference reads the archive's records in the test (ArchiveReader), or builds the plain files'
records itself, and applies the selection, --namespace-map and --on-conflict record by record with
its own evaluator of the filter language; a restore must leave the target exactly so, and a dry run
must report exactly the reference's counts while leaving the target's write sequence unchanged
(and a missing target missing).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import spruce
from selective_reference import (
    DIM,
    FILTERS,
    IDS,
    MAPS,
    SOURCE_NS,
    N,
    Src,
    archive_source,
    check_report,
    contents,
    make_records,
    nonempty,
    ns_names,
    plain_records,
    ref_match,
    simulate,
    write_jsonl,
)
from spruce import jobs
from spruce.archive import ArchiveReader
from spruce.errors import ConflictError, InvalidArgument, JobConflict, SpruceError
from spruce.jobs.selection import EmptySelection
from spruce.storage import open_store

# -- fixtures ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """An archive of namespaces "", films, books (shared ids r000..r029) and an empty one, as
    jsonl.gz parts of 7 records, with a client on a data folder of its own."""
    root = tmp_path_factory.mktemp("selective")
    rng = np.random.default_rng(7)
    c = spruce.Client(root / "data")
    c.create_index("src", dimension=DIM, metric="cosine")
    for ns in ("", "films", "books"):
        c.Index("src").upsert(make_records(rng), namespace=ns)
    c.Index("src").create_namespace("empty")
    c.Index("src").export_index(str(root / "arc"), part_max_records=7, sync=True)
    src = archive_source(root / "arc")
    assert {ns for ns, *_ in src.records} == {"", "films", "books"} and "empty" in src.namespaces
    yield type("World", (), {"root": root, "client": c, "src": src, "arc": str(root / "arc"), "count": [0]})
    c.close()


def fresh(world: Any) -> str:
    world.count[0] += 1
    return f"t{world.count[0]}"


def populate(c: Any, name: str, seed: int) -> dict[str, dict[str, Any]]:
    """A target holding some of the source's ids (other values) and some of its own."""
    rng = np.random.default_rng(seed)
    c.create_index(name, dimension=DIM, metric="cosine")
    for ns in ("", "films", "books", "movies"):
        recs = [r for r in make_records(rng, n=N + 5) if rng.random() < 0.3]
        if recs:
            c.Index(name).upsert(recs, namespace=ns)
    return contents(c.engine, name) or {}


# -- hypothesis: filters, namespaces, ids, maps, conflicts -----------------------------


@settings(max_examples=35, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flt=st.none() | FILTERS, namespaces=st.none() | st.sets(st.sampled_from(SOURCE_NS), min_size=1),
       ids=st.none() | st.sets(st.sampled_from(IDS), max_size=12), nsmap=st.sampled_from(MAPS),
       on_conflict=st.sampled_from(jobs.ON_CONFLICT), allow_empty=st.booleans(), exists=st.booleans(),
       seed=st.integers(0, 10_000))
def test_selective_restore_and_dry_run_match_the_reference(world: Any, flt: Any, namespaces: Any, ids: Any,
                                                           nsmap: Any, on_conflict: str, allow_empty: bool,
                                                           exists: bool, seed: int) -> None:
    c, name = world.client, fresh(world)
    before = populate(c, name, seed) if exists else {}
    seq = c.engine.index(name).seq if exists else None
    after, report, outcome = simulate(world.src, before, namespaces=namespaces, ids=ids, flt=flt, nsmap=nsmap,
                                      on_conflict=on_conflict, allow_empty=allow_empty)
    counts = {ns.name: ns.record_count for ns in ArchiveReader(open_store(world.arc)).manifest.namespaces}
    up_front = not allow_empty and ((ids is not None and not ids) or (
        namespaces is not None and not sum(counts[n] for n in namespaces)))
    kw = dict(namespaces=sorted(namespaces) if namespaces is not None else None, ids=ids, filter=flt,
              namespace_map=nsmap, on_conflict=on_conflict, allow_empty=allow_empty)

    def unchanged() -> None:
        if exists:
            assert c.engine.index(name).seq == seq
            assert contents(c.engine, name) == before
        else:
            assert not c.has_index(name)

    if up_front:  # known before reading: refused before any job, dry run or not
        for dry in (True, False):
            with pytest.raises(EmptySelection):
                c.Index(name).upsert_from_file(world.arc, dry_run=dry, **kw)
            unchanged()
        return
    d = c.Index(name).upsert_from_file(world.arc, dry_run=True, **kw)
    assert d.status == "Completed" and d.records_imported == 0
    check_report(d.dry_run_report, report)
    assert d.dry_run_report["targetExists"] is exists
    assert d.records_skipped_by_selection == report["totals"]["skippedBySelection"]
    unchanged()

    if outcome == "ok":
        d = c.Index(name).upsert_from_file(world.arc, **kw)
        assert d.status == "Completed", d.error
        assert contents(c.engine, name) == nonempty(after)
        assert d.records_imported == report["totals"]["wouldWrite"]
        assert d.records_skipped == report["totals"]["wouldSkip"]
        assert d.records_skipped_by_selection == report["totals"]["skippedBySelection"]
        c.delete_index(name)
        return
    with pytest.raises(EmptySelection if outcome == "empty" else ConflictError):
        c.Index(name).upsert_from_file(world.arc, **kw)
    unchanged()
    if exists:
        c.delete_index(name)


# -- namespaces: what is read and what is created ---------------------------------------


def test_only_the_selected_namespaces_files_are_read(world: Any, tmp_path: Path) -> None:
    arc = tmp_path / "arc"
    shutil.copytree(world.arc, arc)
    part = sorted((arc / "books").glob("part-*"))[0]
    part.write_bytes(part.read_bytes()[:-3] + b"xyz")  # same size, another sha256
    c, name = world.client, fresh(world)
    with pytest.raises(Exception, match="books") as exc:
        c.Index(name).upsert_from_file(str(arc))
    assert "sha256" in str(exc.value) or "checksum" in str(exc.value).lower()
    assert not c.has_index(name)
    d = c.Index(name).upsert_from_file(str(arc), namespaces=["films"], dry_run=True)
    assert d.dry_run_report["namespaces"]["books"]["selected"] is False
    d = c.Index(name).upsert_from_file(str(arc), namespaces=["films", ""])
    after, _, _ = simulate(world.src, {}, namespaces={"films", ""})
    assert contents(c.engine, name) == nonempty(after)
    assert d.records_skipped_by_selection == N  # books, counted from the manifest
    assert d.files_total == d.files_done == len(list((arc / "films").glob("part-*"))) * 2


def test_namespaces_created_follow_the_selection(world: Any) -> None:
    c = world.client
    a = fresh(world)
    c.Index(a).upsert_from_file(world.arc, namespaces=["empty", "films"])
    assert ns_names(c.engine, a) == {"empty", "films"}
    b = fresh(world)
    only_films = {"$and": [{"n": {"$gte": 0}}, {"n": {"$lt": 100}}]}
    c.Index(b).upsert_from_file(world.arc, namespaces=["films", "empty"], filter=only_films)
    assert ns_names(c.engine, b) == {"films"}  # by record: only where records went


# -- empty selections --------------------------------------------------------------------


def test_an_empty_selection_writes_nothing_unless_allowed(world: Any) -> None:
    c, name = world.client, fresh(world)
    before = populate(c, name, 1)
    seq = c.engine.index(name).seq
    nothing = {"s": {"$eq": "no such value"}}
    for on_conflict in jobs.ON_CONFLICT:  # fail: no precheck marker either
        with pytest.raises(EmptySelection, match="allow-empty"):
            c.Index(name).upsert_from_file(world.arc, filter=nothing, on_conflict=on_conflict)
        assert c.engine.index(name).seq == seq
    d = c.Index(name).upsert_from_file(world.arc, filter=nothing, allow_empty=True)
    assert d.status == "Completed" and d.records_imported == 0
    assert d.records_skipped_by_selection == 3 * N
    assert c.engine.index(name).seq == seq and contents(c.engine, name) == before
    new = fresh(world)
    with pytest.raises(EmptySelection):
        c.Index(new).upsert_from_file(world.arc, ids=["nope"])
    assert not c.has_index(new)
    d = c.Index(new).upsert_from_file(world.arc, ids=["nope"], allow_empty=True)
    assert d.status == "Completed" and contents(c.engine, new) == {}
    with pytest.raises(InvalidArgument, match=r"no-such.*it has"):
        c.Index(fresh(world)).upsert_from_file(world.arc, namespaces=["films", "no-such"])
    d = c.Index(fresh(world)).upsert_from_file(world.arc, namespaces=["films", "no-such"], allow_empty=True)
    assert d.records_imported == N and any("no-such" in n for n in d.notes)
    with pytest.raises(EmptySelection):  # known up front from the manifest
        c.Index(fresh(world)).upsert_from_file(world.arc, namespaces=["empty"])


# -- plain files ------------------------------------------------------------------------


def test_plain_folder_and_file_selections(world: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    films_a, films_b, books, default = (make_records(rng, 12), make_records(rng, 12), make_records(rng, 9),
                                        make_records(rng, 8))
    films_b = films_b[6:]  # ids r006..r011 again in a second file: the later one meets the earlier one
    folder = tmp_path / "plain"
    write_jsonl(folder / "films" / "a.jsonl", films_a)
    write_jsonl(folder / "films" / "b.jsonl", films_b)
    write_jsonl(folder / "books" / "c.jsonl", books)
    write_jsonl(folder / "__default__" / "d.jsonl", default)
    src = Src(str(folder), ["", "books", "films"],
              plain_records("", default) + plain_records("books", books) + plain_records("films", films_a) + plain_records("films", films_b),
              False)
    c = world.client
    flt = {"$or": [{"n": {"$gte": 4}}, {"tags": {"$in": ["red"]}}]}
    for on_conflict in ("overwrite", "skip"):
        name = fresh(world)
        before = populate(c, name, 5)
        seq = c.engine.index(name).seq
        after, report, outcome = simulate(src, before, namespaces={"films", ""}, flt=flt, on_conflict=on_conflict,
                                          nsmap={"films": "movies"})
        assert outcome == "ok" and report["totals"]["conflicts"]
        kw = dict(namespaces=["films", "__default__"], filter=flt, on_conflict=on_conflict,
                  namespace_map={"films": "movies"})
        d = c.Index(name).upsert_from_file(str(folder), dry_run=True, **kw)
        check_report(d.dry_run_report, report)
        assert d.dry_run_report["namespaces"]["books"]["records"] is None  # a plain file not read is not counted
        assert c.engine.index(name).seq == seq
        d = c.Index(name).upsert_from_file(str(folder), **kw)
        assert contents(c.engine, name) == nonempty(after)
        # books was not read: a plain file's records are counted only when read
        assert d.records_skipped_by_selection == sum(r["skippedBySelection"] or 0
                                                     for r in report["namespaces"].values())

    one = tmp_path / "one.jsonl"
    write_jsonl(one, films_a)
    name = fresh(world)
    d = c.Index(name).upsert_from_file(str(one), namespace="tgt", namespaces=["tgt"], ids=["r001", "r002", "zz"])
    after, _, _ = simulate(Src(str(one), ["tgt"], plain_records("tgt", films_a), False), {}, ids={"r001", "r002", "zz"})
    assert contents(c.engine, name) == after and set(after["tgt"]) == {"r001", "r002"}
    with pytest.raises(InvalidArgument, match="--target-namespace other"):  # the old meaning of --namespace
        c.Index(fresh(world)).upsert_from_file(str(one), namespaces=["other"])
    with pytest.raises(InvalidArgument, match="--target-namespace"):  # an archive keeps its namespaces
        c.Index(fresh(world)).upsert_from_file(world.arc, namespace="other")


def test_error_mode_continue_counts_the_same_rejects_in_a_dry_run(world: Any, tmp_path: Path) -> None:
    recs = make_records(np.random.default_rng(3), 10)
    f = tmp_path / "bad.jsonl"
    lines = [orjson.dumps(r) for r in recs]
    lines[4] = b'{"id": "r004", "values": [1, 2]}'  # wrong dimension
    f.write_bytes(b"\n".join(lines) + b"\n")
    c, name = world.client, fresh(world)
    kw = dict(error_mode="continue", filter={"n": {"$gte": 3}}, dimension=DIM)
    dry = c.Index(name).upsert_from_file(str(f), dry_run=True, **kw)
    assert not c.has_index(name)
    real = c.Index(name).upsert_from_file(str(f), **kw)
    assert dry.records_rejected == real.records_rejected == 1
    assert dry.dry_run_report["totals"]["wouldWrite"] == real.records_imported
    assert dry.records_skipped_by_selection == real.records_skipped_by_selection
    good = [r for k, r in enumerate(recs) if k != 4]
    want = {r["id"] for r in good if ref_match(r.get("metadata"), {"n": {"$gte": 3}})}
    assert set(contents(c.engine, name)[""]) == want


# -- jobs: writers, resume, the same command ----------------------------------------------


def test_resumed_selection_and_dry_runs_beside_writers(world: Any) -> None:
    c, name = world.client, fresh(world)
    kw = dict(namespaces=["films"], ids=["r001", "r005", "r020"], filter={"n": {"$exists": True}})
    pending = jobs.start_import(c.engine, name, world.arc, sync=False, manager=c.jobs, run=False, **kw)
    ids_file = c.jobs.store.side_file(pending.id, ".ids")
    assert json.loads(ids_file.read_text()) == ["r001", "r005", "r020"]
    assert pending.options["namespaces"] == ["films"] and pending.options["ids"]["count"] == 3
    d = c.Index(name).upsert_from_file(world.arc, dry_run=True)  # a dry run waits for no writer
    assert d.status == "Completed" and not c.has_index(name)
    with pytest.raises(JobConflict):
        c.Index(name).upsert_from_file(world.arc)  # another restore does
    d = c.Index(name).upsert_from_file(world.arc, **kw)  # the same command: the pending job, resumed
    assert d.import_id == pending.id
    after, report, _ = simulate(world.src, {}, namespaces={"films"}, ids=set(kw["ids"]), flt=kw["filter"])
    assert contents(c.engine, name) == nonempty(after)
    assert d.records_skipped_by_selection == report["totals"]["skippedBySelection"]
    assert len(list(c.jobs.store.root.glob("*.ids"))) == len({s.id for s in c.jobs.list("import")
                                                              if "ids" in s.options})

    other = fresh(world)
    tampered = jobs.start_import(c.engine, other, world.arc, sync=False, manager=c.jobs, run=False, **kw)
    c.jobs.store.side_file(tampered.id, ".ids").write_text('["r001"]')
    s = c.jobs.resume(tampered.id, sync=False)
    s = c.jobs.wait(s.id)
    assert s.status == "Failed" and "not the one it started with" in s.error
    assert not c.has_index(other)


KILL_WORKER = """
import sys, time
import spruce
import spruce.jobs.selection as sel

apply = sel.Selection.apply


def slow(self, batch):  # a file at a time, slowly enough to be killed between two
    time.sleep(0.1)
    return apply(self, batch)


sel.Selection.apply = slow
data, arc, flt = sys.argv[1:4]
with spruce.Client(data) as c:
    c.Index("picked").upsert_from_file(arc, namespaces=["a"], filter=__import__("json").loads(flt), sync=True)
"""


def test_a_killed_selective_restore_resumes_to_exactly_the_selection(tmp_path: Path) -> None:
    data, arc = tmp_path / "data", tmp_path / "arc"
    with spruce.Client(data) as c:
        c.create_index("big", dimension=DIM, metric="cosine")
        x = np.random.default_rng(5).standard_normal((3000, DIM)).astype(np.float32)
        c.Index("big").upsert([{"id": f"a{i:05d}", "values": x[i], "metadata": {"i": i}} for i in range(3000)],
                              namespace="a", batch_size=1000)
        c.Index("big").upsert([{"id": f"b{i:05d}", "values": x[i], "metadata": {"i": i}} for i in range(600)],
                              namespace="b")
        c.Index("big").export_index(str(arc), part_max_records=150, sync=True)  # 20 files of a, 4 of b
    flt = {"$or": [{"i": {"$lt": 400}}, {"i": {"$gte": 2500}}]}  # files 3..15 of a select nothing
    src = archive_source(arc)
    after, report, _ = simulate(src, {}, namespaces={"a"}, flt=flt)

    jobs_dir = data / "jobs"
    proc = subprocess.Popen([sys.executable, "-c", KILL_WORKER, str(data), str(arc), json.dumps(flt)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    job_id, killed_at = None, None
    deadline = time.monotonic() + 300  # a guard against a worker that never gets going, not a measurement
    while killed_at is None:
        assert proc.poll() is None, f"the restore ended before it was killed: {proc.stderr.read().decode()[-2000:]}"
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the restore never got going")
        for p in jobs_dir.glob("imp-*.json") if jobs_dir.is_dir() else []:
            try:
                state = json.loads(p.read_text())
            except ValueError:
                continue  # caught mid-write
            if state["files_done"] >= 8:  # 3 committed files, then some that selected nothing
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                job_id, killed_at = p.stem, state["files_done"]
        time.sleep(0.005)
    assert killed_at < 20

    with spruce.Client(data) as c:
        s = c.jobs.describe(job_id)
        assert s.status == "Interrupted"
        assert s.options["namespaces"] == ["a"] and s.options["filter"] == flt  # the selection, kept
        assert any(k.endswith("file:5") for k in s.checkpoint)  # a file that selected nothing: in the state
        done = c.jobs.resume(job_id, sync=True)
        assert done.status == "Completed", done.error
        assert contents(c.engine, "picked") == nonempty(after)
        assert done.records_done == report["totals"]["wouldWrite"] == 400 + 500
        assert done.records_skipped_by_selection == report["totals"]["skippedBySelection"] == 2100 + 600
        assert done.files_done == done.files_total == 20


# -- the command line ------------------------------------------------------------------


def cli(*args: str, data: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPRUCE_")}
    return subprocess.run([sys.executable, "-m", "spruce", "--data", str(data), *args], capture_output=True,
                          text=True, env={**env, "NO_COLOR": "1"}, timeout=300, input=stdin)


def test_cli_selection_dry_run_and_json(world: Any, tmp_path: Path) -> None:
    data = tmp_path / "data"
    with spruce.Client(data) as c:
        before = populate(c, "t", 9)
        seq = c.engine.index("t").seq
    flt = {"$or": [{"s": {"$in": ["a", "b"]}}, {"b": True}]}
    ids = [f"r{i:03d}" for i in range(0, N, 2)]
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n\n")
    args = ["restore", world.arc, "t", "--namespace", "films", "-n", "books", "--filter", json.dumps(flt),
            "--ids-file", str(tmp_path / "ids.txt"), "--namespace-map", "films=movies", "--on-conflict", "skip"]
    after, report, outcome = simulate(world.src, before, namespaces={"films", "books"}, ids=set(ids), flt=flt,
                                      nsmap={"films": "movies"}, on_conflict="skip")
    assert outcome == "ok"

    p = cli(*args, "--dry-run", "--json", data=data)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["status"] == "Completed" and doc["options"]["dry_run"] is True
    check_report(doc["dryRunReport"], report)
    assert doc["recordsSkippedBySelection"] == report["totals"]["skippedBySelection"]
    p = cli(*args, "--dry-run", data=data)  # the table
    assert p.returncode == 0 and "nothing was written" in p.stdout and "movies" in p.stdout
    with spruce.Client(data) as c:
        assert c.engine.index("t").seq == seq

    _, failing, outcome = simulate(world.src, before, namespaces={"films", "books"}, ids=set(ids), flt=flt,
                                   nsmap={"films": "movies"}, on_conflict="fail")
    assert outcome == "conflict"
    p = cli(*args[:-1], "fail", "--dry-run", "--json", data=data)  # the restore would fail: exit 1
    assert p.returncode == 1
    check_report(json.loads(p.stdout)["dryRunReport"], failing)

    p = cli(*args, "--json", data=data)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["recordsImported"] == report["totals"]["wouldWrite"]
    assert doc["recordsSkipped"] == report["totals"]["wouldSkip"]
    assert doc["recordsSkippedBySelection"] == report["totals"]["skippedBySelection"]
    assert doc["options"]["namespaces"] == ["books", "films"] and doc["options"]["ids"]["count"] == len(ids)
    assert doc["options"]["filter"] == {"$or": [{"s": {"$in": ["a", "b"]}}, {"b": {"$eq": True}}]}
    with spruce.Client(data) as c:
        assert contents(c.engine, "t") == nonempty(after)

    p = cli("restore", world.arc, "n1", "--ids-file", "-", "--filter", '{"n": {"$gt": 100}}', "--json", data=data,
            stdin="r001\n")
    assert p.returncode == 1 and "--allow-empty" in p.stderr
    p = cli("restore", world.arc, "n1", "--ids-file", "-", "--filter", '{"n": {"$gt": 100}}', "--allow-empty",
            "--json", data=data, stdin="r001\n")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["recordsImported"] == 0


def test_cli_old_namespace_spelling_on_a_plain_file_names_the_new_one(tmp_path: Path) -> None:
    f = tmp_path / "one.jsonl"
    write_jsonl(f, make_records(np.random.default_rng(2), 5))
    data = tmp_path / "data"
    p = cli("restore", str(f), "t", "--namespace", "films", data=data)
    assert p.returncode == 1
    assert "--target-namespace films" in p.stderr and "Traceback" not in p.stderr
    p = cli("restore", str(f), "t", "--target-namespace", "films", "--json", data=data)
    assert p.returncode == 0, p.stderr
    with spruce.Client(data) as c:
        assert ns_names(c.engine, "t") == {"films"}


# -- HTTP ---------------------------------------------------------------------------------


def test_http_restore_with_a_selection_and_a_dry_run(world: Any, tmp_path: Path) -> None:
    from serverutil import start_server

    key = "sel-key"
    with start_server(tmp_path / "srv", api_key=key) as srv:
        shutil.copytree(world.arc, tmp_path / "srv" / "exports" / "arc")
        http = httpx.Client(base_url=srv.url, headers=srv.headers(), timeout=30)
        flt = {"tags": {"$in": ["red", "blue"]}}
        body = {"uri": "arc", "createIndex": True, "namespaces": ["books", "__default__"], "filter": flt,
                "ids": IDS[:20], "namespaceMap": {"books": "b2"}, "dryRun": True}
        after, report, _ = simulate(world.src, {}, namespaces={"books", ""}, ids=set(IDS[:20]), flt=flt,
                                    nsmap={"books": "b2"})

        def run(body: dict[str, Any]) -> dict[str, Any]:
            r = http.post("/index/sel/bulk/imports", json=body)
            assert r.status_code == 200, r.text
            deadline = time.monotonic() + 60
            while (d := http.get(f"/index/sel/bulk/imports/{r.json()['id']}").json())["status"] not in (
                    "Completed", "Failed", "Cancelled") and time.monotonic() < deadline:
                time.sleep(0.05)
            return d

        d = run(body)
        assert d["status"] == "Completed", d
        check_report(d["dryRunReport"], report)
        assert d["recordsSkippedBySelection"] == report["totals"]["skippedBySelection"]
        assert http.get("/indexes/sel").status_code == 404  # a dry run creates nothing
        d = run({k: v for k, v in body.items() if k != "dryRun"})
        assert d["status"] == "Completed" and d["recordsImported"] == report["totals"]["wouldWrite"]
        assert contents(srv.engine, "sel") == nonempty(after)

        seq = srv.engine.index("sel").seq
        remote = spruce.Client(host=srv.url, api_key=key)
        dry = remote.Index("sel").upsert_from_file("arc", namespaces=["films"], ids=["r003"], dry_run=True)
        assert dry.dry_run_report["totals"]["wouldWrite"] == 1 and srv.engine.index("sel").seq == seq
        with pytest.raises(SpruceError, match=r"matches no record.*allow-empty"):  # the job's error
            remote.Index("sel").upsert_from_file("arc", ids=["nope"])
        assert srv.engine.index("sel").seq == seq
        remote.close()

        (tmp_path / "srv" / "exports" / "one.jsonl").write_bytes(b'{"id": "q", "values": [1, 2, 3, 4]}\n')
        bad = http.post("/index/sel/bulk/imports", json={"uri": "one.jsonl", "namespaces": ["films"]})
        assert bad.status_code == 400 and "--target-namespace films" in bad.text
        ok = run({"uri": "one.jsonl", "targetNamespace": "films", "namespaces": ["films"]})
        assert ok["status"] == "Completed" and ok["recordsImported"] == 1
        http.close()
