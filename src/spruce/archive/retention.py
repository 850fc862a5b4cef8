"""Which backup snapshots a retention policy keeps: restic's ``forget`` semantics, plus chain protection.

The rules are restic's (``internal/data/snapshot_policy.go``, ``doc/060_forget.rst``) on purpose:
operators already know ``--keep-last/-hourly/-daily/-weekly/-monthly/-yearly/-tag``, so the same
flags must mean exactly the same thing here, down to the quirks (calendar buckets in UTC that only
count periods with a snapshot, the newest snapshot of a bucket wins, ``-1`` = unlimited, the oldest
snapshot kept while a rule has budget left, an empty policy removes nothing). Snapshots are judged
per index, as restic judges per host+paths group.

The one addition: an incremental snapshot is useless without its parent, transitively, so every
ancestor of a kept snapshot is kept too ("parent of kept <id>"). ``forget`` never breaks a chain.
A parent that is not in the list is ignored here; reporting broken chains is another command's job.

Pure logic: no I/O, nothing is deleted here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Protocol

from spruce.errors import InvalidArgument

__all__ = ["Decision", "Policy", "SnapshotLike", "apply_policy"]

UNLIMITED = -1


@dataclass(frozen=True)
class Policy:
    """How many snapshots to keep per rule (0 = rule off, -1 = unlimited), and tags that always keep."""

    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    # keep every snapshot that has ANY of these tags; "" matches untagged snapshots (as restic's --keep-tag '')
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name == "tags":
                continue
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidArgument(f"keep-{f.name} must be an integer, not {value!r}")
            if value < UNLIMITED:
                raise InvalidArgument(
                    f"keep-{f.name} is {value}: negative values other than -1 (unlimited) are not allowed"
                )
        if isinstance(self.tags, str):
            raise InvalidArgument(f"tags must be a sequence of tags, not the string {self.tags!r}")
        object.__setattr__(self, "tags", tuple(self.tags))

    def empty(self) -> bool:
        """True if no rule is set at all (restic then refuses to remove anything)."""
        return not self.tags and not any(self._counts())

    def _counts(self) -> list[int]:
        return [self.last, self.hourly, self.daily, self.weekly, self.monthly, self.yearly]


class SnapshotLike(Protocol):
    """What the policy reads of a snapshot (read-only, so frozen dataclasses fit too)."""

    @property
    def id(self) -> str: ...
    @property
    def time(self) -> datetime: ...  # aware, UTC
    @property
    def tags(self) -> Sequence[str]: ...
    @property
    def parent(self) -> str | None: ...  # the snapshot an incremental is based on
    @property
    def index(self) -> str: ...  # the group the policy is applied to


@dataclass
class Decision:
    keep: list[SnapshotLike] = field(default_factory=list)  # newest first
    remove: list[SnapshotLike] = field(default_factory=list)  # newest first
    reasons: dict[str, list[str]] = field(default_factory=dict)  # kept snapshot id -> why


# restic's bucket keys; the first argument of each is the snapshot's position (only `last` uses it)
def _always(nr: int, t: datetime) -> int:
    return nr


def _hour(nr: int, t: datetime) -> int:
    return t.year * 1_000_000 + t.month * 10_000 + t.day * 100 + t.hour


def _day(nr: int, t: datetime) -> int:
    return t.year * 10_000 + t.month * 100 + t.day


def _week(nr: int, t: datetime) -> int:
    year, week, _ = t.isocalendar()
    return year * 100 + week


def _month(nr: int, t: datetime) -> int:
    return t.year * 100 + t.month


def _year(nr: int, t: datetime) -> int:
    return t.year


_BUCKERS: tuple[tuple[Callable[[int, datetime], int], str], ...] = (
    (_always, "last snapshot"),
    (_hour, "hourly snapshot"),
    (_day, "daily snapshot"),
    (_week, "weekly snapshot"),
    (_month, "monthly snapshot"),
    (_year, "yearly snapshot"),
)


def _utc(sn: SnapshotLike) -> datetime:
    if sn.time.tzinfo is None or sn.time.utcoffset() is None:
        raise InvalidArgument(f"snapshot {sn.id}: time {sn.time.isoformat()} has no time zone")
    return sn.time.astimezone(UTC)


def _has_tag(sn: SnapshotLike, tag: str) -> bool:
    # restic's Snapshot.HasTags for a one-tag list: '' means "has no tags at all"
    return not sn.tags if tag == "" else tag in sn.tags


def _newest_first(snapshots: Sequence[SnapshotLike]) -> list[SnapshotLike]:
    # stable, like restic's sort.Stable: snapshots with equal times keep their given order
    return sorted(snapshots, key=_utc, reverse=True)


def _apply_group(group: list[SnapshotLike], policy: Policy, reasons: dict[str, list[str]]) -> None:
    """restic's ApplyPolicy loop over one newest-first group; records a reason list per kept snapshot."""
    counts = policy._counts()
    last_val: list[int | None] = [None] * len(_BUCKERS)
    for nr, sn in enumerate(group):
        t = _utc(sn)
        why = [f"has tags [{tag}]" for tag in policy.tags if _has_tag(sn, tag)]
        is_oldest = nr == len(group) - 1
        for i, (bucker, reason) in enumerate(_BUCKERS):
            if counts[i] == 0:  # rule off, or its budget is spent
                continue
            val = bucker(nr, t)
            if val != last_val[i] or is_oldest:
                # a new bucket; or the oldest snapshot while budget is left, to keep the longest history
                why.append(f"oldest {reason}" if val == last_val[i] else reason)
                last_val[i] = val
                if counts[i] > 0:
                    counts[i] -= 1
        if why:
            reasons[sn.id] = why


def apply_policy(snapshots: Sequence[SnapshotLike], policy: Policy) -> Decision:
    """Split snapshots into keep and remove (both newest first) by policy, per index, sparing chains."""
    ordered = _newest_first(snapshots)
    by_id: dict[str, SnapshotLike] = {}
    for sn in ordered:
        if sn.id in by_id:
            raise InvalidArgument(f"snapshot id {sn.id} appears twice")
        by_id[sn.id] = sn

    if policy.empty():  # like restic, never remove anything without a policy
        return Decision(keep=ordered, remove=[], reasons={sn.id: ["no policy"] for sn in ordered})

    reasons: dict[str, list[str]] = {}
    groups: dict[str, list[SnapshotLike]] = {}
    for sn in ordered:
        groups.setdefault(sn.index, []).append(sn)
    for group in groups.values():
        _apply_group(group, policy, reasons)

    # chain protection: walk up from every kept snapshot; each snapshot is walked from once
    todo = [sn for sn in ordered if sn.id in reasons]
    while todo:
        child = todo.pop()
        parent = by_id.get(child.parent) if child.parent is not None else None
        if parent is None or parent.id == child.id:  # not given (reported elsewhere), or nonsense
            continue
        note = f"parent of kept {child.id}"
        if parent.id in reasons:
            if note not in reasons[parent.id]:
                reasons[parent.id].append(note)
        else:
            reasons[parent.id] = [note]
            todo.append(parent)

    return Decision(
        keep=[sn for sn in ordered if sn.id in reasons],
        remove=[sn for sn in ordered if sn.id not in reasons],
        reasons={sn.id: reasons[sn.id] for sn in ordered if sn.id in reasons},
    )
