"""The web console (/console), in a real browser against a real ``spruce serve``.

Debian's chromium (/usr/bin/chromium; ``make test`` installs it with apt) is driven by Playwright;
Playwright's own browser download is never used. Without the browser these tests fail where
apt-get exists (the install step was skipped) and are skipped, saying why, only where it does not.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import pytest

from serverutil import RunningServer, start_server, wait_job

API_KEY = "console-" + uuid.uuid4().hex[:12]
CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]
BIG = 40_000  # records of index "big": an export of it in parts of 5 records runs long enough to cancel
FCP_JS = ("() => (performance.getEntriesByType('paint').find(e => e.name === 'first-contentful-paint') || {})"
          ".startTime")


def _seed(data_dir: Path) -> None:
    """The indexes, written in-process before the server starts (quicker than over HTTP)."""
    import spruce

    rng = np.random.default_rng(3)
    with spruce.Client(data_dir=data_dir) as c:
        for name, counts in (("films", {"drama": 1200, "comedy": 800}), ("big", {"": BIG})):
            c.create_index(name, dimension=8, metric="cosine")
            for ns, n in counts.items():
                x = rng.standard_normal((n, 8)).astype(np.float32)
                for start in range(0, n, 5000):
                    c.Index(name).upsert([{"id": f"{ns or 'd'}-{i:06d}", "values": x[i]}
                                          for i in range(start, min(n, start + 5000))], namespace=ns)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("console") / "data"
    _seed(path)
    return path


@pytest.fixture(scope="module")
def server(data_dir: Path) -> Iterator[RunningServer]:
    with start_server(data_dir, api_key=API_KEY, mode="subprocess") as srv:
        yield srv


@pytest.fixture(scope="module")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"Api-Key": API_KEY}, timeout=60) as client:
        yield client



@pytest.fixture(scope="module")
def finished_jobs(http: httpx.Client, data_dir: Path) -> dict[str, str]:
    """A completed export, and a restore that failed (a damaged part) with a long error."""
    done = http.post("/index/films/bulk/exports", json={"uri": "films-seed"}).json()["id"]
    assert wait_job(http, done)["status"] == "Completed"
    damaged = http.post("/index/films/bulk/exports", json={"uri": "films-damaged"}).json()["id"]
    wait_job(http, damaged)
    next((data_dir / "exports" / "films-damaged").rglob("part-*")).write_bytes(b"not the bytes it had")
    restore = {"uri": "films-damaged", "createIndex": True}
    failed = http.post("/index/films-copy/bulk/imports", json=restore).json()
    assert wait_job(http, failed["id"])["status"] == "Failed"
    return {"export": done, "failed": failed["id"]}


# -- the browser ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        if shutil.which("apt-get"):
            pytest.fail(f"{CHROMIUM} is missing, and apt-get is here to install it: run `make test` (its "
                        "chromium step runs `apt-get install -y chromium`) or install it by hand")
        pytest.skip(f"{CHROMIUM} is missing and this machine has no apt-get to install it: the console's "
                    "browser tests need Debian's chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: `make install` (it is in the test extra)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    ctx.set_default_timeout(15_000)
    pg = ctx.new_page()
    pg.requested = []  # every URL the page asked for: the key must be in none
    pg.on("request", lambda r: pg.requested.append(r.url))
    yield pg
    assert not [u for u in pg.requested if API_KEY in u]
    ctx.close()


def _open(page: Any, server: RunningServer, path: str, key: str | None = API_KEY) -> None:
    page.goto(f"{server.url}{path}" + (f"#api_key={key}" if key else ""))


def _expect() -> Any:
    from playwright.sync_api import expect

    expect.set_options(timeout=15_000)  # a slow machine: wait longer, never sleep
    return expect


# -- the assets, without a browser -------------------------------------------------------------


def test_assets_are_public_and_the_data_is_not(server: RunningServer) -> None:
    for path in ("/console", "/console/", "/console/jobs", "/console/archives", "/console/start"):
        r = httpx.get(server.url + path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), path
        assert "default-src 'none'" in r.headers["content-security-policy"]
        assert "<nav" in r.text and "<main" in r.text and "http" not in r.text.split("<body>")[0]  # no CDN
    for name in ("console.js", "views.js", "start.js", "console.css"):
        r = httpx.get(f"{server.url}/console/{name}")
        assert r.status_code == 200 and r.content, name
        assert httpx.get(f"{server.url}/console/{name}",
                         headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    assert httpx.get(server.url + "/console/nope").status_code == 404
    assert httpx.post(server.url + "/console/jobs").status_code == 405
    assert httpx.head(server.url + "/console/console.js").status_code == 200
    for method, path in (("GET", "/indexes"), ("GET", "/jobs"), ("GET", "/verifications"),
                         ("POST", "/verifications")):
        r = httpx.request(method, server.url + path, headers={"Api-Key": "wrong"})
        assert r.status_code == 401 and r.json()["error"]["message"] == "Invalid API key.", path


def test_verifications_endpoint(http: httpx.Client, finished_jobs: dict[str, str]) -> None:
    ok = http.post("/verifications", json={"jobId": finished_jobs["export"]}).json()
    assert ok["ok"] is True and ok["filesChecked"] == 2 and ok["problems"] == []
    bad = http.post("/verifications", json={"jobId": finished_jobs["failed"]})
    assert bad.status_code == 400
    assert "only an export's or a backup's archive" in bad.json()["error"]["message"]
    assert http.post("/verifications", json={}).status_code == 400
    assert http.post("/verifications", json={"jobId": "exp-nope"}).status_code == 404
    exports = http.get("/jobs?kind=export").json()["data"]
    damaged = next(j for j in exports if j["uri"].endswith("films-damaged"))
    found = http.post("/verifications", json={"jobId": damaged["id"]}).json()
    assert found["ok"] is False and "the manifest says" in found["problems"][0]
    listed = {v["jobId"]: v for v in http.get("/verifications").json()["data"]}
    assert listed[finished_jobs["export"]]["ok"] is True and listed[damaged["id"]]["ok"] is False


# -- pages ------------------------------------------------------------------------------------


def test_index_list(page: Any, server: RunningServer) -> None:
    expect = _expect()
    _open(page, server, "/console")
    films = page.locator("tr[data-key='films']")
    expect(films.locator("td[data-label='Dimension']")).to_have_text("8")
    expect(films.locator("td[data-label='Metric']")).to_have_text("cosine")
    expect(films.locator("li[data-ns='drama'] .count")).to_have_text("1,200")
    expect(films.locator("li[data-ns='comedy'] .count")).to_have_text("800")
    expect(page.locator("tr[data-key='big'] li[data-ns='__default__'] .count")).to_have_text(f"{BIG:,}")
    expect(films.locator("td[data-label='Status']")).to_have_text("Ready")
    expect(page.locator("th[scope=col]").first).to_have_text("Name")
    assert "api_key" not in page.url and API_KEY not in page.url  # the fragment is gone at once
    fcp = page.evaluate(FCP_JS)
    print(f"\n/console first contentful paint: {fcp:.0f} ms")


def test_wrong_key_shows_a_message_then_the_right_one_works(page: Any, server: RunningServer,
                                                          finished_jobs: dict[str, str]) -> None:
    expect = _expect()
    _open(page, server, "/console/jobs", key="not-the-key")
    expect(page.locator("#key-error")).to_have_text(
        "The server refused this API key: Invalid API key. Type the right key below.")
    expect(page.locator("#key-view")).to_be_visible()
    expect(page.locator("#view")).to_be_hidden()
    assert "not-the-key" not in page.url
    assert page.evaluate("sessionStorage.length") == 0  # a refused key is not kept
    page.get_by_role("textbox", name="API key").fill(API_KEY)
    page.keyboard.press("Enter")
    expect(page.locator("table caption")).to_contain_text("newest first")
    expect(page.locator("#key-view")).to_be_hidden()
    page.get_by_label("Kind").select_option("import")  # the filter is /jobs?kind=import
    expect(page.locator("td[data-label='Kind']")).not_to_have_count(0)
    expect(page.locator("td[data-label='Kind']", has_not_text="import")).to_have_count(0)
    assert page.url.endswith("/console/jobs?kind=import")
    page.evaluate("sessionStorage.clear()")
    page.goto(f"{server.url}/console/")
    expect(page.locator("#key-error")).to_contain_text("This server needs an API key")


def test_export_from_the_form_rises_to_100_then_downloads(page: Any, server: RunningServer,
                                                           http: httpx.Client) -> None:
    expect = _expect()
    _open(page, server, "/console/start")
    expect(page.locator("#export-index option[value='films']")).to_have_count(1)
    # the server's own words, verbatim, as the CLI prints them
    page.select_option("#export-index", "films")
    page.get_by_role("button", name="Start export").click()
    expect(page.locator("#export-error")).to_have_text("uri is required: where to write the archive")
    page.fill("#backup-repo", "/etc/spruce")
    page.get_by_role("button", name="Start backup").click()
    said = httpx.post(f"{server.url}/repositories/{quote('/etc/spruce', safe='')}/snapshots",
                      headers={"Api-Key": API_KEY}, json={"index": "films", "format": "jsonl.gz"}).json()
    expect(page.locator("#backup-error")).to_have_text(said["error"]["message"])

    page.evaluate("""() => { window.seen = [];
        new MutationObserver(() => {
            const el = document.querySelector('#export-result .pct');
            if (el && window.seen[window.seen.length - 1] !== el.textContent) window.seen.push(el.textContent);
        }).observe(document.getElementById('export-result'),
                   {subtree: true, childList: true, characterData: true}); }""")
    page.get_by_label("Destination").fill("films-from-console")
    page.get_by_role("button", name="Start export").click()
    expect(page.locator("#export-error")).to_be_empty()
    expect(page.locator("#export-result .status")).to_have_text("Completed", timeout=30_000)
    expect(page.locator("#export-result .pct")).to_have_text("100 %")
    seen = [int(s.split()[0]) for s in page.evaluate("window.seen")]
    print(f"\nexport percent seen in the form: {seen}")
    assert seen and seen[-1] == 100 and seen == sorted(seen)
    job_id = page.locator("#export-result").get_attribute("data-job")
    assert http.get(f"/jobs/{job_id}").json()["recordsExported"] == 2000

    page.get_by_role("link", name="Backups and exports").first.click()
    row = page.locator(f"tr[data-key='{job_id}']")
    expect(row.locator("td[data-label='Records']")).to_have_text("2,000")
    expect(row.locator("td[data-label='Checksums']")).to_contain_text("Not verified")
    row.get_by_role("button", name=f"Verify checksums of {job_id}").click()
    expect(row.locator("td[data-label='Checksums']")).to_contain_text("Verified: 2 files")
    manifest = httpx.get(row.locator("a.manifest").get_attribute("href"))  # no key: the link is signed
    assert manifest.status_code == 200 and manifest.json()["export_id"] == job_id
    part = row.locator("ul.files a", has_text="drama/part-00000").get_attribute("href")
    got = httpx.get(part)
    assert got.status_code == 200 and got.content[:2] == b"\x1f\x8b"


def test_cancel_a_running_job_from_the_jobs_page(page: Any, server: RunningServer, http: httpx.Client,
                                                  finished_jobs: dict[str, str]) -> None:
    expect = _expect()
    slow = {"uri": "big-cancel", "partMaxRecords": 5}
    job_id = http.post("/index/big/bulk/exports", json=slow).json()["id"]
    try:
        _open(page, server, "/console/jobs")
        page.evaluate("window.notReloaded = true")
        row = page.locator(f"tr[data-key='{job_id}']")
        expect(row.locator(".badge")).to_have_text("InProgress")
        first = row.locator(".pct").text_content()
        expect(row.locator(".pct")).not_to_have_text(first)  # it moves without a reload
        expect(row.locator(".rate")).to_have_text(re.compile(r"^[\d,]+$"))
        expect(row.locator(".eta")).to_have_text(re.compile(r"\d+ (s|min|h)"))
        failed = page.locator(f"tr[data-key='{finished_jobs['failed']} detail'] .errtext")
        expect(failed).to_contain_text("the manifest says")  # a failed job's error, in full
        assert http.get(f"/jobs/{finished_jobs['failed']}").json()["error"] == failed.text_content()
        cancel = page.get_by_role("button", name=f"Cancel job {job_id}")
        cancel.focus()  # by keyboard
        page.keyboard.press("Enter")
        expect(row.locator(".badge")).to_have_text("Cancelled", timeout=30_000)
        expect(cancel).to_be_disabled()
        assert page.evaluate("window.notReloaded") is True
        assert http.get(f"/jobs/{job_id}").json()["status"] == "Cancelled"
    finally:
        http.delete(f"/jobs/{job_id}")


def test_390_px_wide(browser: Any, server: RunningServer, finished_jobs: dict[str, str]) -> None:
    expect = _expect()
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        page = ctx.new_page()
        for path, ready in (("/console/", "tr[data-key='films']"),
                            ("/console/jobs", f"tr[data-key='{finished_jobs['failed']} detail']"),
                            ("/console/archives", f"tr[data-key='{finished_jobs['export']}'] a.manifest"),
                            ("/console/start", "#restore-form")):
            _open(page, server, path)
            expect(page.locator(ready)).to_be_visible(timeout=15_000)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{path} is {width} px wide at 390 px"
        page.evaluate("sessionStorage.clear()")
        page.goto(f"{server.url}/console/#api_key=wrong")
        expect(page.locator("#key-error")).to_contain_text("Invalid API key")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        ctx.close()


def _run_form(page: Any, form: str, button: str) -> str:
    """Submit a start form and wait for its job to complete; returns the job's id."""
    expect = _expect()
    result = page.locator(f"#{form}-result")
    before = result.get_attribute("data-job") or ""
    page.get_by_role("button", name=button).click()
    expect(result).not_to_have_attribute("data-job", before)  # this job's result, not the last one's
    expect(result).to_have_attribute("data-status", "Completed", timeout=30_000)
    expect(page.locator(f"#{form}-error")).to_be_empty()
    return result.get_attribute("data-job")


def test_backup_then_restore_from_the_forms(page: Any, server: RunningServer,
                                            finished_jobs: dict[str, str]) -> None:
    expect = _expect()
    _open(page, server, "/console/start")
    expect(page.locator("#backup-index option[value='films']")).to_have_count(1)
    page.select_option("#backup-index", "films")
    page.fill("#backup-repo", "console-repo")
    _run_form(page, "backup", "Start backup")

    page.select_option("#restore-from", "snapshot")
    expect(page.locator("fieldset[data-from='archive']")).to_be_hidden()
    page.fill("#restore-repo", "console-repo")
    page.fill("#restore-target", "films-from-snapshot")
    _run_form(page, "restore", "Start restore")
    page.select_option("#restore-from", "archive")
    page.fill("#restore-uri", "films-seed")
    page.fill("#restore-target", "films-from-archive")
    _run_form(page, "restore", "Start restore")

    page.get_by_role("link", name="Indexes").click()
    for name in ("films-from-snapshot", "films-from-archive"):
        expect(page.locator(f"tr[data-key='{name}'] li[data-ns='drama'] .count")).to_have_text("1,200")


def test_a_server_without_a_key_needs_none(browser: Any, tmp_path: Path) -> None:
    expect = _expect()
    with start_server(tmp_path / "data") as srv:
        ctx = browser.new_context()
        try:
            page = ctx.new_page()
            page.goto(f"{srv.url}/console/")
            expect(page.locator("#view .empty")).to_contain_text("No indexes yet")
            expect(page.locator("#key-view")).to_be_hidden()
            expect(page.get_by_role("button", name="Forget key")).to_be_hidden()
        finally:
            ctx.close()


def test_a_restore_killed_with_the_server_shows_initializing_then_resumes(browser: Any, tmp_path: Path) -> None:
    """kill -9 of the server mid-restore: the index it created stays Initializing and the job is
    Interrupted; the Resume button finishes it, without a reload, and the index turns Ready."""
    import spruce

    expect = _expect()
    data = tmp_path / "data"
    n, part = 6000, 40
    x = np.random.default_rng(5).standard_normal((n, 8)).astype(np.float32)
    with spruce.Client(data_dir=data) as c:
        c.create_index("src", dimension=8, metric="cosine")
        c.Index("src").upsert([{"id": f"r{i:05d}", "values": x[i]} for i in range(n)])
        c.Index("src").export_index(str(data / "exports" / "src-parts"), part_max_records=part, sync=True)
    srv = start_server(data, api_key=API_KEY, mode="subprocess")
    try:
        job_id = httpx.post(f"{srv.url}/index/copy/bulk/imports", headers={"Api-Key": API_KEY},
                            json={"uri": "src-parts", "createIndex": True}).json()["id"]
        state_file = data / "jobs" / f"{job_id}.json"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                done = json.loads(state_file.read_bytes()).get("files_done", 0)
            except (OSError, ValueError):
                done = 0
            if done >= 2:
                break
            time.sleep(0.005)
        os.kill(srv.pid, signal.SIGKILL)
    finally:
        srv.stop()
    left = json.loads(state_file.read_bytes())
    assert left["status"] == "InProgress" and 2 <= left["files_done"] < n // part, left

    with start_server(data, api_key=API_KEY, mode="subprocess", auto_resume=False) as again:
        ctx = browser.new_context(viewport={"width": 1280, "height": 800})
        try:
            page = ctx.new_page()
            _open(page, again, "/console")
            copy = page.locator("tr[data-key='copy']")
            expect(copy.locator("td[data-label='Status'] .badge")).to_have_text("Initializing")
            expect(copy.locator("td[data-label='Status']")).to_contain_text(job_id)
            page.get_by_role("link", name="Jobs").first.click()
            row = page.locator(f"tr[data-key='{job_id}']")
            expect(row.locator(".badge")).to_have_text("Interrupted")
            page.evaluate("window.notReloaded = true")
            page.get_by_role("button", name=f"Resume job {job_id}").click()
            expect(row.locator(".badge")).to_have_text("Completed", timeout=60_000)
            assert page.evaluate("window.notReloaded") is True
            page.get_by_role("link", name="Indexes").first.click()
            expect(copy.locator("td[data-label='Status'] .badge")).to_have_text("Ready")
            expect(copy.locator("li[data-ns='__default__'] .count")).to_have_text(f"{n:,}")
        finally:
            ctx.close()
