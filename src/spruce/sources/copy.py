"""``spruce copy SRC DST``: one job that moves records between any two ends, written once.

Guarantees, for every pair of ends:

* **Checked before written.** A target that cannot hold something the source has (Chroma and
  sparse vectors, Qdrant's normalized cosine vectors, ...) is found by a pass over the source
  before anything is written; the job fails naming the loss and an example record, unless
  ``allow_lossy``, when the loss is converted by the connector's documented rule and listed in
  the job's notes. Nothing is converted silently.
* **Resumable from the last committed page.** After each page the job stores the source cursor
  and the target's counts. A resume continues after that page; writes are idempotent upserts, so
  a page replayed after a crash converges. An archive target starts again from the beginning
  (its manifest is written last, so a partial archive never looks complete).
* **Never over newer writes.** A resume is refused (the job becomes Superseded) when the target
  changed since the job stopped: for an index of this data folder, any write after the job's last
  commit (its write sequence number); for another engine, a total count that moved by more than
  the records of the page that was in flight (looked up id by id where the engine can). (An edit
  that keeps the total cannot be seen in an engine spruce does not own: copy again to be sure.)
* **Complete or failed.** At the end every namespace's count in the target must be at least the
  source's (equal when the target started empty); otherwise the job fails, naming the namespace.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from spruce.errors import IntegrityError, InvalidArgument, NotFound, SpruceError
from spruce.jobs.manager import JobContext, register_runner
from spruce.jobs.state import JobState, new_job_id
from spruce.sources.base import Connector, ConnectorError, Losses, LossyCopy, public_uri
from spruce.sources.ends import ArchiveSourceEnd, ArchiveTargetEnd, SpruceIndexEnd
from spruce.sources.readahead import read_ahead

RETRIES = 5


class IncompleteCopy(IntegrityError):
    """The target holds fewer records than the source after the copy: it is not trusted."""


def is_connector(spec: str) -> bool:
    from spruce.sources.registry import scheme_of

    return scheme_of(spec) is not None


def open_end(spec: str, *, engine: Any, role: str, job_id: str | None = None,
             options: dict[str, Any] | None = None) -> Connector:
    """The end named by ``spec`` (see ``spruce.sources.ends``)."""
    from spruce.records import validate_index_name
    from spruce.sources.registry import open_connector, scheme_of

    opts = options or {}
    if scheme_of(spec) is not None:
        return open_connector(spec)
    if "://" not in spec and "/" not in spec and not spec.startswith("."):
        try:
            validate_index_name(spec)
        except InvalidArgument:
            pass
        else:
            return SpruceIndexEnd(engine, spec, job_id)
    if role == "source":
        return ArchiveSourceEnd(spec, opts.get("storage"))
    return ArchiveTargetEnd(spec, format=opts.get("format") or "jsonl.gz", overwrite=bool(opts.get("overwrite")),
                            storage_options=opts.get("storage"))


def start_copy(engine: Any, src: str, dst: str, *, allow_lossy: bool = False, format: str = "jsonl.gz",
               overwrite: bool = False, namespaces: list[str] | None = None, sync: bool = False,
               manager: Any = None, run: bool = True) -> JobState:
    """Start a copy job from ``src`` to ``dst``; both ends are opened now, so a bad URI, a missing
    collection or a missing client library is an error before any job exists."""
    from spruce.jobs import jobs_for

    if src == dst:
        raise InvalidArgument("source and target are the same")
    opts = {"src": src, "dst": dst, "allow_lossy": allow_lossy, "format": format, "overwrite": overwrite,
            "namespaces": namespaces}
    source = open_end(src, engine=engine, role="source", options=opts)
    try:
        shape = _probe(source, src)
        if shape is None:
            raise NotFound(f"{src}: nothing to copy (no such collection, table or index)")
        target = open_end(dst, engine=engine, role="target", options=opts)
        try:
            shape.refuse_other(_probe(target, dst), dst)
            target.accept_namespaces(list(namespaces) if namespaces is not None else source.namespaces())
            into_index = isinstance(target, SpruceIndexEnd)
        finally:
            target.close()
    finally:
        source.close()
    kind = "copy-in" if into_index else "copy"
    state = JobState(id=new_job_id("copy"), kind=kind, index=dst if into_index else src,
                     uri=src if into_index else dst, options=opts)
    return (manager or jobs_for(engine)).submit(state, sync=sync, run=run)


def _probe(end: Connector, spec: str) -> Any:
    """The end's shape, asked now: an unreachable server or a refused login is an error before
    any job exists, in one line naming the URI."""
    try:
        return end.shape()
    except SpruceError:
        raise
    except Exception as exc:
        raise ConnectorError(f"{spec}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc


def run_copy(ctx: JobContext) -> None:
    s = ctx.state
    o = s.options
    engine = ctx.manager.engine
    source = open_end(o["src"], engine=engine, role="source", options=o)
    target = open_end(o["dst"], engine=engine, role="target", job_id=s.id, options=o)
    try:
        _copy(ctx, source, target)
    finally:
        source.close()
        target.close()


def _copy(ctx: JobContext, source: Connector, target: Connector) -> None:
    s = ctx.state
    o = s.options
    shape = source.shape()
    if shape is None:
        raise NotFound(f"{o['src']}: nothing to copy (no such collection, table or index)")
    wanted = o.get("namespaces")
    nss = source.namespaces() if wanted is None else list(wanted)
    counts = {ns: source.count(ns) for ns in nss}
    archive = isinstance(target, ArchiveTargetEnd)
    cp = s.checkpoint
    if archive or not cp:  # first attempt (or an archive, which starts over)
        cp.clear()
        cp.update({"namespaces": {}, "target_start": {}})
    s.records_total = sum(counts.values())
    s.records_done = sum(v.get("done", 0) for v in cp["namespaces"].values())
    ctx.save()
    target.expected = shape
    if not o.get("allow_lossy") and not s.records_done and getattr(target, "may_lose", lambda _s: False)(shape):
        _preflight(ctx, source, target, nss)
    target.accept_namespaces(nss)
    target.ensure(shape)
    for ns in nss:
        cp["target_start"].setdefault(ns, target.count(ns) if not archive else 0)
    if not archive and not isinstance(target, SpruceIndexEnd):
        cp.setdefault("target_total", target.total())
    ctx.save()
    losses = Losses()
    for ns in nss:
        state = cp["namespaces"].setdefault(ns, {"cursor": None, "done": 0, "finished": False})
        if state["finished"]:
            continue
        if archive:
            target.add_namespace(ns)  # type: ignore[attr-defined]
        for page in read_ahead(source.pages(ns, state["cursor"])):
            ctx.check_cancel()
            batch = target.check(ns, page.batch, losses)
            skipped = len(page.batch) - len(batch)  # records allow_lossy skips (the target cannot take them)
            if losses and not o.get("allow_lossy"):
                raise LossyCopy(f"{o['dst']} cannot hold what {o['src']} has: " + "; ".join(losses.lines()) +
                                "; nothing more is written (pass --allow-lossy to convert, see docs/CONNECTORS.md)")
            external = not archive and not isinstance(target, SpruceIndexEnd)
            if external:  # a kill during this write leaves the target up to this page ahead
                cp["pending"], cp["pending_page"] = len(batch), {"namespace": ns, "cursor": state["cursor"]}
                ctx.save()
            _retry(ctx, lambda b=batch, n=ns, cur=page.cursor: _write(target, n, b, s.id, cur))
            state["cursor"], state["done"] = page.cursor, state["done"] + len(batch)
            state["dropped"] = state.get("dropped", 0) + skipped
            ctx.progress(records=len(batch))
            if external:
                cp["target_total"], cp["pending"] = target.total(), 0
            ctx.save()
        state["finished"] = True
        ctx.save()
    for line in losses.lines():
        s.notes.append(f"converted (--allow-lossy): {line}")
    if archive:
        kind = getattr(source, "kind", "spruce")
        target.commit({"index": (source.label or "collection")[:45], "dimension": shape.dimension,  # type: ignore[attr-defined]
                       "metric": shape.metric, "vector_type": shape.vector_type, "spec": {"connector": kind},
                       "host": public_uri(source.uri) if kind != "spruce" else None, "kind": kind}, s.id)
        return
    short = []
    for ns in nss:
        have, need = target.count(ns), counts[ns] - cp["namespaces"].get(ns, {}).get("dropped", 0)
        exact = not cp["target_start"].get(ns)  # an empty target must end with exactly the source's records
        if have < need or (exact and have != need):
            short.append(f"{ns or '__default__'}: {have:,} in the target, {need:,} in the source")
    if short:
        raise IncompleteCopy(f"the target's counts do not match the source's after the copy ({'; '.join(short)})")
    if isinstance(target, SpruceIndexEnd) and engine_has(target):
        target._index().mark_ready(s.id)


def engine_has(end: SpruceIndexEnd) -> bool:
    return end.engine.has_index(end.name)


def _write(target: Connector, ns: str, batch: Any, job_id: str, cursor: Any) -> None:
    if isinstance(target, SpruceIndexEnd):  # the page and its marker commit together
        target.write(ns, batch, marker=(f"copy:{job_id}:{ns}", {"cursor": cursor}))
    else:
        target.write(ns, batch)


def _preflight(ctx: JobContext, source: Connector, target: Connector, nss: list[str]) -> None:
    """Read the whole source once through the target's check, writing nothing."""
    losses = Losses()
    for ns in nss:
        for page in source.pages(ns):
            ctx.check_cancel()
            target.check(ns, page.batch, losses)
    if losses:
        raise LossyCopy(f"{ctx.state.options['dst']} cannot hold what {ctx.state.options['src']} has: "
                        + "; ".join(losses.lines()) + "; nothing was written (pass --allow-lossy to convert by the "
                        "rules in docs/CONNECTORS.md)")


def _retry(ctx: JobContext, fn: Callable[[], None]) -> None:
    """Retry a write by the policy every connector shares (``spruce.sources.retry``): connection
    errors, timeouts, HTTP 408, 429 and 5xx again, after a capped exponential backoff with full
    jitter (or the server's Retry-After), at most RETRIES attempts, the waits ending at once
    when the job is cancelled; anything else (a 4xx validation error, a spruce error) is raised
    at once, as it was raised. A replay is safe because writes are idempotent."""
    from spruce.sources.retry import Retrier, cancellable_sleep

    event = getattr(ctx, "cancel_event", None)  # set by an in-process cancel: the wait ends at once
    wait = event.wait if event is not None else time.sleep
    retrier = Retrier(attempts=RETRIES, base=0.5, wrap=False, check_cancel=ctx.check_cancel,
                      sleep=lambda seconds: cancellable_sleep(seconds, ctx.check_cancel, wait=wait))
    retrier.call("write", fn)


def resume_check(manager: Any, s: JobState) -> str | None:
    """Why copy ``s`` must not resume: its target changed since its last committed page."""
    engine = manager.engine
    if s.kind == "copy-in":
        if not engine.has_index(s.index):
            return None if not s.records_done else f"index {s.index!r} was deleted after this job stopped"
        index = engine.index(s.index)
        own = [m.get("seq", 0) for m in index.markers(f"copy:{s.id}:").values() if isinstance(m, dict)]
        if not own or index.seq <= max(own):
            return None
        last = index.last_write() or {}
        index.mark_ready(s.id)
        return (f"index {s.index!r} was written after this job's last commit (write #{last.get('seq', index.seq)} "
                f"by {last.get('by', 'an unknown writer')} at {last.get('at', 'an unknown time')}); resuming would "
                "undo it")
    cp = s.checkpoint
    if cp.get("target_total") is None:
        return None  # it never wrote
    try:
        target = open_end(s.options["dst"], engine=engine, role="target", options=s.options)
    except Exception:
        return None  # the run reports why it cannot open the target
    try:
        now = target.total()
        then, pending = cp["target_total"], cp.get("pending", 0)
        # the page in flight when the job stopped may have landed: up to ``pending`` more is the
        # job's own, and where the engine can say which ids it holds, exactly that page's ids
        landed = pending
        if then < now <= then + pending and cp.get("pending_page"):
            landed = _landed(engine, s, target, cp["pending_page"], pending)
    finally:
        target.close()
    changed = [] if then <= now <= then + landed else [f"{then:,} records then, {now:,} now"]
    if changed:
        return f"{s.options['dst']} changed after this job stopped ({'; '.join(changed)}); resuming could undo that"
    return None


def _landed(engine: Any, s: JobState, target: Connector, page: dict[str, Any], pending: int) -> int:
    """How many records of the page in flight the target holds now (``pending`` when unknown)."""
    try:
        source = open_end(s.options["src"], engine=engine, role="source", options=s.options)
    except Exception:
        return pending
    try:
        ids = source.read(page["namespace"], page["cursor"], pending).batch.ids[:pending]
        found = target.existing(page["namespace"], ids)
    except Exception:
        return pending
    finally:
        source.close()
    return pending if found is None else found


register_runner("copy", run_copy, resume_check=resume_check)
register_runner("copy-in", run_copy, resume_check=resume_check, writes_index=True)
