"""spruce.archive.retention: restic's forget policy (ported golden cases and doc examples) + chain protection."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spruce.archive.retention import Policy, apply_policy
from spruce.errors import InvalidArgument


@dataclass
class Snap:
    id: str
    time: datetime
    tags: tuple[str, ...] = ()
    parent: str | None = None
    index: str = "idx"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def kept_ids(snapshots: list[Snap], policy: Policy) -> list[str]:
    return [sn.id for sn in apply_policy(snapshots, policy).keep]


# restic internal/data/snapshot_policy_test.go, testExpireSnapshots, in its order; id = position in the list.
_RESTIC_LIST = """
2014-09-01 10:20:30 | 2014-09-02 10:20:30 | 2014-09-05 10:20:30 | 2014-09-06 10:20:30
2014-09-08 10:20:30 | 2014-09-09 10:20:30 | 2014-09-10 10:20:30 | 2014-09-11 10:20:30
2014-09-20 10:20:30 | 2014-09-22 10:20:30 | 2014-08-08 10:20:30 | 2014-08-10 10:20:30
2014-08-12 10:20:30 | 2014-08-13 10:20:30 | 2014-08-13 10:20:30.1 | 2014-08-15 10:20:30
2014-08-18 10:20:30 | 2014-08-20 10:20:30 | 2014-08-21 10:20:30 | 2014-08-22 10:20:30
2014-10-01 10:20:30 foo | 2014-10-02 10:20:30 foo | 2014-10-05 10:20:30 foo
2014-10-06 10:20:30 foo | 2014-10-08 10:20:30 foo | 2014-10-09 10:20:30 foo
2014-10-10 10:20:30 foo | 2014-10-11 10:20:30 foo | 2014-10-20 10:20:30 foo
2014-10-22 10:20:30 foo | 2014-11-08 10:20:30 foo | 2014-11-10 10:20:30 foo
2014-11-12 10:20:30 foo | 2014-11-13 10:20:30 foo | 2014-11-13 10:20:30.1 bar
2014-11-15 10:20:30 foo,bar | 2014-11-18 10:20:30 | 2014-11-20 10:20:30 | 2014-11-21 10:20:30
2014-11-22 10:20:30 | 2015-09-01 10:20:30 | 2015-09-02 10:20:30 | 2015-09-05 10:20:30
2015-09-06 10:20:30 | 2015-09-08 10:20:30 | 2015-09-09 10:20:30 | 2015-09-10 10:20:30
2015-09-11 10:20:30 | 2015-09-20 10:20:30 | 2015-09-22 10:20:30 | 2015-08-08 10:20:30
2015-08-10 10:20:30 | 2015-08-12 10:20:30 | 2015-08-13 10:20:30 | 2015-08-13 10:20:30.1
2015-08-15 10:20:30 | 2015-08-18 10:20:30 | 2015-08-20 10:20:30 | 2015-08-21 10:20:30
2015-08-22 10:20:30 | 2015-10-01 10:20:30 | 2015-10-02 10:20:30 | 2015-10-05 10:20:30
2015-10-06 10:20:30 | 2015-10-08 10:20:30 | 2015-10-09 10:20:30 | 2015-10-10 10:20:30
2015-10-11 10:20:30 | 2015-10-20 10:20:30 | 2015-10-22 10:20:30 | 2015-10-22 10:20:30
2015-10-22 10:20:30 foo,bar | 2015-10-22 10:20:30 foo,bar | 2015-10-22 10:20:30 foo,bar
2015-11-08 10:20:30 | 2015-11-10 10:20:30 | 2015-11-12 10:20:30 | 2015-11-13 10:20:30
2015-11-13 10:20:30.1 | 2015-11-15 10:20:30 | 2015-11-18 10:20:30 | 2015-11-20 10:20:30
2015-11-21 10:20:30 | 2015-11-22 10:20:30 | 2016-01-01 01:02:03 | 2016-01-01 01:03:03
2016-01-01 07:08:03 | 2016-01-03 07:02:03 | 2016-01-04 10:23:03 | 2016-01-04 11:23:03
2016-01-04 12:23:03 | 2016-01-04 12:24:03 | 2016-01-04 12:28:03 | 2016-01-04 12:30:03
2016-01-04 16:23:03 | 2016-01-05 09:02:03 | 2016-01-06 08:02:03 | 2016-01-07 10:02:03
2016-01-08 20:02:03 | 2016-01-09 21:02:03 | 2016-01-12 21:02:03 | 2016-01-12 21:08:03
2016-01-18 12:02:03
"""


def restic_snapshots() -> list[Snap]:
    out = []
    for n, entry in enumerate(e.strip() for e in _RESTIC_LIST.replace("\n", "|").split("|") if e.strip()):
        day, clock, *tags = entry.split(" ")
        out.append(Snap(str(n), at(f"{day} {clock}"), tuple(tags[0].split(",")) if tags else ()))
    assert len(out) == 103
    return out


# Golden files internal/data/testdata/policy_keep_snapshots_N: kept snapshots newest first as "id:reasons",
# one letter per entry of restic's "matches" (lowercase = restic's "oldest ... snapshot").
_MATCH = {"L": "last snapshot", "H": "hourly snapshot", "D": "daily snapshot", "W": "weekly snapshot",
          "M": "monthly snapshot", "Y": "yearly snapshot", "f": "has tags [foo]", "b": "has tags [bar]",
          "y": "oldest yearly snapshot", "m": "oldest monthly snapshot"}
_NEWEST_FIRST = [str(i) for i in (  # policy_keep_snapshots_4 (keep-last 200): all 103 in restic's sort order
    102, 101, 100, 99, 98, 97, 96, 95, 94, 93, 92, 91, 90, 89, 88, 87, 86, 85, 84, 83, 82, 81, 80, 79, 78,
    77, 76, 75, 74, 69, 70, 71, 72, 73, 68, 67, 66, 65, 64, 63, 62, 61, 60, 49, 48, 47, 46, 45, 44, 43, 42,
    41, 40, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 39, 38, 37, 36, 35, 34, 33, 32, 31, 30, 29, 28, 27, 26,
    25, 24, 23, 22, 21, 20, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10)]
_ALL_LAST = " ".join(f"{i}:L" for i in _NEWEST_FIRST)
GOLDEN: list[tuple[int, Policy, str]] = [
    (1, Policy(last=10), "102:L 101:L 100:L 99:L 98:L 97:L 96:L 95:L 94:L 93:L"),
    (2, Policy(last=15), "102:L 101:L 100:L 99:L 98:L 97:L 96:L 95:L 94:L 93:L 92:L 91:L 90:L 89:L 88:L"),
    (3, Policy(last=99), " ".join(_ALL_LAST.split()[:99])),
    (4, Policy(last=200), _ALL_LAST),
    (5, Policy(hourly=20), "102:H 101:H 99:H 98:H 97:H 96:H 95:H 94:H 93:H 89:H 88:H 87:H 86:H 85:H 83:H "
                           "82:H 81:H 80:H 79:H 78:H"),
    (6, Policy(daily=3), "102:D 101:D 99:D"),
    (7, Policy(daily=10), "102:D 101:D 99:D 98:D 97:D 96:D 95:D 94:D 87:D 86:D"),
    (8, Policy(daily=30), "102:D 101:D 99:D 98:D 97:D 96:D 95:D 94:D 87:D 86:D 83:D 82:D 81:D 80:D 79:D "
                          "78:D 76:D 75:D 74:D 69:D 68:D 67:D 66:D 65:D 64:D 63:D 62:D 61:D 60:D 49:D"),
    (9, Policy(last=5, daily=5), "102:LD 101:LD 100:L 99:LD 98:LD 97:D"),
    (10, Policy(last=2, daily=10), "102:LD 101:LD 99:D 98:D 97:D 96:D 95:D 94:D 87:D 86:D"),
    (11, Policy(weekly=2), "102:W 101:W"),
    (12, Policy(weekly=4), "102:W 101:W 99:W 87:W"),
    (13, Policy(daily=3, weekly=4), "102:DW 101:DW 99:DW 87:W"),
    (14, Policy(monthly=6), "102:M 83:M 69:M 49:M 59:M 39:M"),
    (15, Policy(daily=2, weekly=2, monthly=6), "102:DWM 101:DW 83:M 69:M 49:M 59:M 39:M"),
    (16, Policy(yearly=10), "102:Y 83:Y 39:Y 10:y"),
    (17, Policy(daily=7, weekly=2, monthly=3, yearly=10),
     "102:DWMY 101:DW 99:D 98:D 97:D 96:D 95:D 83:MY 69:M 39:Y 10:y"),
    (18, Policy(tags=("foo",)), "71:f 72:f 73:f 35:f 33:f 32:f 31:f 30:f 29:f 28:f 27:f 26:f 25:f 24:f 23:f "
                                "22:f 21:f 20:f"),
    # 19 is --keep-tag foo,bar (AND within one list), which spruce's any-of tags do not express
    (20, Policy(tags=("foo", "bar")), "71:fb 72:fb 73:fb 35:fb 34:b 33:f 32:f 31:f 30:f 29:f 28:f 27:f 26:f "
                                      "25:f 24:f 23:f 22:f 21:f 20:f"),
    (36, Policy(last=-1), _ALL_LAST),
    (37, Policy(last=-1, hourly=-1),
     "102:LH 101:LH 100:L 99:LH 98:LH 97:LH 96:LH 95:LH 94:LH 93:LH 92:L 91:L 90:L 89:LH 88:LH 87:LH "
     "86:LH 85:LH 84:L 83:LH 82:LH 81:LH 80:LH 79:LH 78:LH 77:L 76:LH 75:LH 74:LH 69:LH 70:L 71:L 72:L "
     "73:L 68:LH 67:LH 66:LH 65:LH 64:LH 63:LH 62:LH 61:LH 60:LH 49:LH 48:LH 47:LH 46:LH 45:LH 44:LH "
     "43:LH 42:LH 41:LH 40:LH 59:LH 58:LH 57:LH 56:LH 55:LH 54:LH 53:L 52:LH 51:LH 50:LH 39:LH 38:LH "
     "37:LH 36:LH 35:LH 34:LH 33:L 32:LH 31:LH 30:LH 29:LH 28:LH 27:LH 26:LH 25:LH 24:LH 23:LH 22:LH "
     "21:LH 20:LH 9:LH 8:LH 7:LH 6:LH 5:LH 4:LH 3:LH 2:LH 1:LH 0:LH 19:LH 18:LH 17:LH 16:LH 15:LH "
     "14:LH 13:L 12:LH 11:LH 10:LH"),
    (38, Policy(hourly=-1),
     "102:H 101:H 99:H 98:H 97:H 96:H 95:H 94:H 93:H 89:H 88:H 87:H 86:H 85:H 83:H 82:H 81:H 80:H 79:H "
     "78:H 76:H 75:H 74:H 69:H 68:H 67:H 66:H 65:H 64:H 63:H 62:H 61:H 60:H 49:H 48:H 47:H 46:H 45:H "
     "44:H 43:H 42:H 41:H 40:H 59:H 58:H 57:H 56:H 55:H 54:H 52:H 51:H 50:H 39:H 38:H 37:H 36:H 35:H "
     "34:H 32:H 31:H 30:H 29:H 28:H 27:H 26:H 25:H 24:H 23:H 22:H 21:H 20:H 9:H 8:H 7:H 6:H 5:H 4:H "
     "3:H 2:H 1:H 0:H 19:H 18:H 17:H 16:H 15:H 14:H 12:H 11:H 10:H"),
    (39, Policy(daily=3, weekly=2, monthly=-1, yearly=-1),
     "102:DWMY 101:DW 99:D 83:MY 69:M 49:M 59:M 39:MY 29:M 9:M 19:M 10:my"),
]


@pytest.mark.parametrize(("golden", "policy", "expected"), GOLDEN, ids=[f"golden_{g[0]}" for g in GOLDEN])
def test_restic_golden_cases(golden: int, policy: Policy, expected: str) -> None:
    snapshots = restic_snapshots()
    decision = apply_policy(snapshots, policy)
    want = [tok.split(":") for tok in expected.split()]
    assert [sn.id for sn in decision.keep] == [sid for sid, _ in want]
    assert decision.reasons == {sid: [_MATCH[c] for c in codes] for sid, codes in want}
    kept = {sn.id for sn in decision.keep}
    assert [sn.id for sn in decision.remove] == [i for i in _NEWEST_FIRST if i not in kept]


def test_empty_policy_keeps_everything() -> None:
    # restic's TestExpireSnapshotOps (Empty) and doc: "restic refuses to act on an empty policy"
    assert Policy().empty() and Policy(tags=()).empty() and Policy(last=0).empty()
    assert not Policy(daily=7, weekly=2, monthly=3, yearly=10).empty()
    assert not Policy(last=-1).empty() and not Policy(tags=("x",)).empty()
    snapshots = restic_snapshots()
    decision = apply_policy(snapshots, Policy())
    assert [sn.id for sn in decision.keep] == _NEWEST_FIRST and decision.remove == []
    assert set(decision.reasons) == set(_NEWEST_FIRST)
    assert all(r == ["no policy"] for r in decision.reasons.values())
    chain = [Snap("f", at("2024-01-01 00:00")), Snap("i", at("2024-01-02 00:00"), parent="f")]
    assert apply_policy(chain, Policy()).reasons == {"i": ["no policy"], "f": ["no policy"]}
    assert apply_policy([], Policy(last=1)).keep == []


@pytest.mark.parametrize("name", ["last", "hourly", "daily", "weekly", "monthly", "yearly"])
def test_negative_counts_other_than_minus_one_are_rejected(name: str) -> None:
    assert getattr(Policy(**{name: -1}), name) == -1
    for bad in (-2, -100):
        with pytest.raises(InvalidArgument, match=f"keep-{name}"):
            Policy(**{name: bad})


def test_doc_keep_last_1() -> None:  # doc/060_forget.rst, "forget --keep-last 1 --prune"
    snaps = [Snap("8c02b94b", at("2017-02-21 10:48:33")), Snap("4bba301e", at("2017-02-21 10:49:18"))]
    decision = apply_policy(snaps, Policy(last=1))
    assert [sn.id for sn in decision.keep] == ["4bba301e"]
    assert [sn.id for sn in decision.remove] == ["8c02b94b"]


def test_doc_keep_daily_5_with_a_missed_wednesday() -> None:  # doc/060_forget.rst, "forget --keep-daily 5"
    rows = [("60e5c031", "2025-04-21T11:00"), ("1dccffe9", "2025-04-22T11:00"), ("90a5c949", "2025-04-23T11:00"),
            ("79580708", "2025-04-24T11:00"), ("8a603ddf", "2025-04-25T11:00"), ("ae33bf10", "2025-04-25T23:00"),
            ("fb8b1418", "2025-04-28T11:00"), ("1db188b4", "2025-04-29T11:00"), ("7baa4f28", "2025-05-01T11:00"),
            ("05c48af3", "2025-05-02T11:00"), ("ad72e262", "2025-05-02T23:00")]
    snaps = [Snap(sid, at(t)) for sid, t in rows]
    decision = apply_policy(snaps, Policy(daily=5))
    # the doc's table shows the kept Friday's time (23:00), i.e. ae33bf10, under 8a603ddf's id (a doc typo)
    assert [sn.id for sn in decision.keep] == ["ad72e262", "7baa4f28", "1db188b4", "fb8b1418", "ae33bf10"]
    assert all(r == ["daily snapshot"] for r in decision.reasons.values())
    assert {sn.id for sn in decision.remove} == {"60e5c031", "1dccffe9", "90a5c949", "79580708",
                                                 "8a603ddf", "05c48af3"}


def test_doc_daily_backups_for_100_years() -> None:
    # doc: --keep-daily 7 --keep-weekly 5 --keep-monthly 12 --keep-yearly 75 over a daily backup for 100 years
    # keeps 7 dailies, 4 more weeklies, 12 or 11 more monthlies, 75 or 74 more yearlies. Ending on Sunday
    # 2023-12-31, the newest is all four at once: 7 + 4 + 11 + 74.
    end = at("2023-12-31 12:00")
    snaps = [Snap(f"d{n}", end - timedelta(days=n)) for n in range(36525)]
    decision = apply_policy(snaps, Policy(daily=7, weekly=5, monthly=12, yearly=75))
    assert len(decision.keep) == 7 + 4 + 11 + 74
    for rule, n in (("daily", 7), ("weekly", 5), ("monthly", 12), ("yearly", 75)):
        assert sum(f"{rule} snapshot" in r for r in decision.reasons.values()) == n
    assert decision.keep[-1].time == at("1949-12-31 12:00")


def test_buckets_are_utc() -> None:
    # 23:30 at UTC-5 on Jan 1 is 04:30 UTC on Jan 2: the same UTC day as "b", so "b" loses its day
    snaps = [Snap("a", datetime(2024, 1, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5)))),
             Snap("b", at("2024-01-02 01:00")), Snap("c", at("2023-12-30 12:00"))]
    assert kept_ids(snaps, Policy(daily=3)) == ["a", "c"]


def test_empty_tag_keeps_untagged_snapshots() -> None:  # doc: "--keep-tag '' will match untagged snapshots"
    snaps = [Snap("t", at("2024-01-02 00:00"), ("x",)), Snap("u", at("2024-01-01 00:00"))]
    assert kept_ids(snaps, Policy(tags=("",))) == ["u"]


def test_chain_of_a_kept_incremental_is_kept() -> None:
    full = Snap("full", at("2024-01-01 00:00"))
    inc1 = Snap("inc1", at("2024-01-02 00:00"), parent="full")
    inc2 = Snap("inc2", at("2024-01-03 00:00"), parent="inc1")
    decision = apply_policy([full, inc1, inc2], Policy(last=1))
    assert [sn.id for sn in decision.keep] == ["inc2", "inc1", "full"]
    assert decision.remove == []
    assert decision.reasons == {"inc2": ["last snapshot"], "inc1": ["parent of kept inc2"],
                                "full": ["parent of kept inc1"]}


def test_chain_protection_keeps_only_what_is_needed() -> None:
    old_full = Snap("f1", at("2024-01-01 00:00"))
    old_inc = Snap("i1", at("2024-01-02 00:00"), parent="f1")
    full = Snap("f2", at("2024-01-03 00:00"))
    inc_a = Snap("i2a", at("2024-01-04 00:00"), parent="f2")
    inc_b = Snap("i2b", at("2024-01-04 06:00"), parent="i2a")
    decision = apply_policy([old_full, old_inc, full, inc_a, inc_b], Policy(daily=2))
    # daily keeps i2b (Jan 4) and f2 (Jan 3); i2a is removed by policy but needed by i2b
    assert [sn.id for sn in decision.keep] == ["i2b", "i2a", "f2"]
    assert [sn.id for sn in decision.remove] == ["i1", "f1"]
    assert decision.reasons["i2a"] == ["parent of kept i2b"]
    assert decision.reasons["f2"] == ["daily snapshot", "parent of kept i2a"]


def test_missing_parent_and_parent_cycles_are_tolerated() -> None:
    orphan = Snap("o", at("2024-01-03 00:00"), parent="gone")
    a = Snap("a", at("2024-01-02 00:00"), parent="b")
    b = Snap("b", at("2024-01-01 00:00"), parent="a")
    decision = apply_policy([orphan, a, b], Policy(last=1))
    assert decision.reasons == {"o": ["last snapshot"]}
    assert kept_ids([orphan, a, b], Policy(last=2)) == ["o", "a", "b"]


def test_each_index_is_judged_on_its_own() -> None:
    snaps = [Snap(f"{ix}{n}", at(f"2024-01-0{n} 0{k}:00"), index=ix)
             for n in range(1, 5) for k, ix in enumerate(("x", "y"))]
    decision = apply_policy(snaps, Policy(last=2))
    assert [sn.id for sn in decision.keep] == ["y4", "x4", "y3", "x3"]
    last_one = apply_policy(snaps, Policy(tags=("nope",), last=1))
    assert [sn.id for sn in last_one.keep] == ["y4", "x4"]


def test_duplicate_ids_and_naive_times_are_rejected() -> None:
    with pytest.raises(InvalidArgument, match="twice"):
        apply_policy([Snap("a", at("2024-01-01 00:00")), Snap("a", at("2024-01-02 00:00"))], Policy(last=1))
    with pytest.raises(InvalidArgument, match="time zone"):
        apply_policy([Snap("a", datetime(2024, 1, 1))], Policy(last=1))


_counts = st.integers(min_value=-1, max_value=4)
_policies = st.builds(Policy, last=_counts, hourly=_counts, daily=_counts, weekly=_counts,
                      monthly=_counts, yearly=_counts, tags=st.sampled_from([(), ("t",)]))


@st.composite
def _histories(draw: st.DrawFn) -> list[Snap]:
    hours = draw(st.lists(st.integers(0, 24 * 800), min_size=0, max_size=30))
    snaps: list[Snap] = []
    for n, h in enumerate(hours):
        parent = draw(st.sampled_from([None] + [s.id for s in snaps]))
        snaps.append(Snap(f"s{n}", at("2023-01-01 00:00") + timedelta(hours=h), ("t",) if n % 5 == 0 else (),
                          parent, draw(st.sampled_from(["x", "y"]))))
    return snaps


@settings(max_examples=300, deadline=None)
@given(_histories(), _policies, _policies)
def test_properties(snaps: list[Snap], p: Policy, q: Policy) -> None:
    decision = apply_policy(snaps, p)
    kept = [sn.id for sn in decision.keep]
    assert sorted(kept + [sn.id for sn in decision.remove]) == sorted(sn.id for sn in snaps)
    assert set(decision.reasons) == set(kept)
    for part in (decision.keep, decision.remove):
        assert [sn.time for sn in part] == sorted((sn.time for sn in part), reverse=True)
    assert all(sn.parent in decision.reasons for sn in decision.keep if sn.parent is not None)  # no broken chain
    # a bigger policy never keeps less (each rule only adds; -1 is the biggest count)
    big = Policy(**{f: -1 if -1 in (getattr(p, f), getattr(q, f)) else max(getattr(p, f), getattr(q, f))
                    for f in ("last", "hourly", "daily", "weekly", "monthly", "yearly")}, tags=p.tags or q.tags)
    if not p.empty():
        assert set(kept) <= {sn.id for sn in apply_policy(snaps, big).keep}
    # without chains or tags, restic's bound holds: no more than the sum of the counts
    flat = [Snap(sn.id, sn.time, (), None, sn.index) for sn in snaps]
    counts = [p.last, p.hourly, p.daily, p.weekly, p.monthly, p.yearly]
    if -1 not in counts and sum(counts) > 0:
        per_index = {ix: sum(sn.index == ix for sn in flat) for ix in ("x", "y")}
        assert len(apply_policy(flat, p).keep) <= sum(min(sum(counts), n) for n in per_index.values())
