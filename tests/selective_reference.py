"""The brute-force reference of tests/test_selective_restore.py: records, a filter evaluator of its
own, and a record-by-record simulation of a selective restore (selection, namespace map, on-conflict)
that also gives the dry run's expected report.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from hypothesis import strategies as st

from spruce.archive import ArchiveReader
from spruce.jobs.dryrun import COUNTS
from spruce.storage import open_store

DIM, N = 4, 30
STRS, TAGS = ["a", "b", "c", "d"], ["red", "green", "blue", "x"]

FIELDS = ["n", "x", "s", "b", "tags"]
SOURCE_NS = ["", "films", "books", "empty"]  # "empty" exists in the archive and holds no record
MAPS = [None, {"films": "movies"}, {"films": "", "books": ""}, {"": "books"}]


def shown(ns: str) -> str:
    return ns or "__default__"


def make_records(rng: np.random.Generator, n: int = N, prefix: str = "r") -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        md: dict[str, Any] = {}
        if rng.random() < 0.85:
            md["n"] = int(rng.integers(0, 12))
        if rng.random() < 0.8:
            md["x"] = round(float(rng.uniform(-5, 5)), 2)
        if rng.random() < 0.85:
            md["s"] = str(rng.choice(STRS))
        if rng.random() < 0.8:
            md["b"] = bool(rng.random() < 0.5)
        if rng.random() < 0.8:
            md["tags"] = sorted(set(rng.choice(TAGS, size=int(rng.integers(1, 4))).tolist()))
        rec: dict[str, Any] = {"id": f"{prefix}{i:03d}", "values": rng.standard_normal(DIM).astype(np.float32).tolist()}
        if md:
            rec["metadata"] = md
        out.append(rec)
    return out


# -- the reference ------------------------------------------------------------------


def _kind(v: Any) -> str:
    return "b" if isinstance(v, bool) else "s" if isinstance(v, str) else "n"


def _eq(a: Any, b: Any) -> bool:
    return _kind(a) == _kind(b) and a == b


_CMP = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}


def ref_match(md: dict[str, Any] | None, flt: dict[str, Any]) -> bool:
    """Pinecone's semantics, written out: a list matches when any element does ($ne/$nin: none
    does), a missing field matches only $ne, $nin and $exists false, types never mix."""
    md = md or {}
    for key, cond in flt.items():
        if key == "$and":
            ok = all(ref_match(md, c) for c in cond)
        elif key == "$or":
            ok = any(ref_match(md, c) for c in cond)
        else:
            v = md.get(key)
            vals = [] if v is None else v if isinstance(v, list) else [v]
            ok = True
            for op, x in (cond if isinstance(cond, dict) else {"$eq": cond}).items():
                if op == "$eq":
                    r = any(_eq(e, x) for e in vals)
                elif op == "$ne":
                    r = not any(_eq(e, x) for e in vals)
                elif op in _CMP:
                    r = any(_kind(e) == "n" and _CMP[op](e, x) for e in vals)
                elif op == "$in":
                    r = any(_eq(e, y) for e in vals for y in x)
                elif op == "$nin":
                    r = not any(_eq(e, y) for e in vals for y in x)
                else:
                    r = (v is not None) == x
                ok = ok and r
        if not ok:
            return False
    return True


@dataclass
class Src:
    """A source as the reference sees it: its records in the order a restore applies them."""

    uri: str
    namespaces: list[str]
    records: list[tuple[str, str, bytes, Any]]  # (namespace, id, float32 bytes, metadata)
    counts_known: bool  # an archive's manifest counts the records of namespaces not read


def simulate(src: Src, before: dict[str, dict[str, Any]], *, namespaces: Any = None, ids: Any = None,
             flt: Any = None, nsmap: Any = None, on_conflict: str = "overwrite",
             allow_empty: bool = False) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(the target after the restore, the dry run's report, "ok" | "empty" | "conflict")."""
    nsmap = nsmap or {}
    after = copy.deepcopy(before)
    rows = {ns: {"target": shown(nsmap.get(ns, ns)), "selected": namespaces is None or ns in namespaces,
                 **dict.fromkeys(COUNTS, 0)} for ns in src.namespaces}
    written: dict[str, set[str]] = {}
    for ns, rid, vals, md in src.records:
        row = rows[ns]
        if not row["selected"]:
            if src.counts_known:
                row["records"] += 1
                row["skippedBySelection"] += 1
            else:
                row["records"] = row["skippedBySelection"] = None
            continue
        row["records"] += 1
        if (ids is not None and rid not in ids) or (flt is not None and not ref_match(md, flt)):
            row["skippedBySelection"] += 1
            continue
        row["matched"] += 1
        t = nsmap.get(ns, ns)
        in_before, earlier = rid in before.get(t, {}), rid in written.setdefault(t, set())
        if in_before or earlier:
            row["conflicts"] += 1
            if on_conflict == "skip":
                row["wouldSkip"] += 1
                continue
            if in_before and on_conflict == "fail":
                row["wouldFail"] += 1
                continue
            row["wouldOverwrite"] += 1
        else:
            row["new"] += 1
        row["wouldWrite"] += 1
        after.setdefault(t, {})[rid] = (vals, md)
        written[t].add(rid)
    totals = {k: None if any(r[k] is None for r in rows.values()) else sum(r[k] for r in rows.values())
              for k in COUNTS}
    selective = namespaces is not None or ids is not None or flt is not None
    outcome = "ok"
    if on_conflict == "fail" and totals["wouldFail"]:
        outcome = "conflict"
    elif selective and not allow_empty and not totals["matched"]:
        outcome = "empty"
    if outcome != "ok":
        after = copy.deepcopy(before)
        for row in [*rows.values(), totals]:
            row["wouldWrite"] = 0
    report = {"onConflict": on_conflict, "wouldSucceed": outcome == "ok",
              "namespaces": {shown(ns): r for ns, r in rows.items()}, "totals": totals}
    return after, report, outcome


def archive_source(path: Path) -> Src:
    reader = ArchiveReader(open_store(str(path)))
    records = []
    for entry in reader.manifest.namespaces:
        for batch in reader.iter_batches(entry):
            records.extend((entry.name, rid, batch.values[j].tobytes(), batch.metadata[j])
                           for j, rid in enumerate(batch.ids))
    return Src(str(path), [e.name for e in reader.manifest.namespaces], records, True)


def contents(engine: Any, name: str) -> dict[str, dict[str, Any]] | None:
    """Every record of an index, by namespace (namespaces without records left out); None if absent."""
    if not engine.has_index(name):
        return None
    out: dict[str, dict[str, Any]] = {}
    with engine.index(name).snapshot() as snap:
        for ns in snap.namespaces():
            recs = {rid: (b.values[j].tobytes(), b.metadata[j]) for b in snap.iter_batches(ns)
                    for j, rid in enumerate(b.ids)}
            if recs:
                out[ns] = recs
    return out


def ns_names(engine: Any, name: str) -> set[str]:
    """Every namespace of an index, empty ones included."""
    with engine.index(name).snapshot() as snap:
        return set(snap.namespaces())


def nonempty(d: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {ns: recs for ns, recs in d.items() if recs}


def check_report(report: dict[str, Any], expected: dict[str, Any]) -> None:
    assert {k: report[k] for k in expected} == expected
    assert (report["problem"] is None) == report["wouldSucceed"]


# -- filters, as hypothesis draws them ------------------------------------------

NUM = st.integers(-1, 12) | st.floats(-6, 6, allow_nan=False).map(lambda v: round(v, 1))
SCALAR = st.sampled_from(STRS + TAGS) | st.booleans() | NUM


def _op(field: Any, ops: Any, operand: Any) -> Any:
    return st.tuples(field, ops, operand).map(lambda t: {t[0]: {t[1]: t[2]}})


LEAF = st.one_of(
    _op(st.sampled_from(["n", "x"]), st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"]), NUM),
    st.tuples(NUM, NUM).map(lambda t: {"n": {"$gte": t[0], "$lt": t[1]}}),
    _op(st.sampled_from(["s", "tags"]), st.sampled_from(["$eq", "$ne"]), st.sampled_from(STRS + TAGS)),
    st.tuples(st.sampled_from(["s", "tags"]), st.sampled_from(STRS + TAGS)).map(lambda t: {t[0]: t[1]}),
    _op(st.just("b"), st.sampled_from(["$eq", "$ne"]), st.booleans()),
    _op(st.sampled_from(FIELDS), st.sampled_from(["$in", "$nin"]), st.lists(SCALAR, min_size=1, max_size=4)),
    _op(st.sampled_from(FIELDS), st.just("$exists"), st.booleans()),
    _op(st.sampled_from(FIELDS), st.sampled_from(["$eq", "$ne"]), SCALAR),  # types that never match
)
FILTERS = st.recursive(LEAF, lambda inner: st.one_of(
    st.lists(inner, min_size=1, max_size=3).map(lambda fs: {"$and": fs}),
    st.lists(inner, min_size=1, max_size=3).map(lambda fs: {"$or": fs}),
    st.tuples(inner, inner).map(lambda t: {**t[0], **t[1]}),
), max_leaves=6)
IDS = [f"r{i:03d}" for i in range(N)] + ["nope"]  # "nope" is in no source


def write_jsonl(path: Path, recs: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in recs))


def plain_records(ns: str, recs: list[dict[str, Any]]) -> list[tuple[str, str, bytes, Any]]:
    return [(ns, r["id"], np.asarray(r["values"], dtype=np.float32).tobytes(), r.get("metadata")) for r in recs]
