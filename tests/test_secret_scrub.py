"""Credentials never reach job state, even when a storage endpoint echoes the request back.

A fake endpoint answers every request with 403 and an XML error whose message is the request
line and headers, XML-escaped (as some S3-compatible servers and Azure do). The failed export's
job file, its public status and its error must hold no secret, in any encoding.
"""

from __future__ import annotations

import base64
import html
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, quote_plus

import pytest

import spruce
from spruce.jobs import start_export
from spruce.storage.secrets import scrub

ACCESS_KEY = "AKIASPRUCETESTKEY123"
SECRET_KEY = "sEcReT/with+plus=and/slash0123456789"
SAS = "sv=2022-11-02&ss=b&srt=sco&sp=rwl&se=2030-01-01T00:00:00Z&sig=Zm9vYmFy%2Bc2lnbmF0dXJl%2F%3D"
SAS_SIG = "Zm9vYmFy+c2lnbmF0dXJl/="


class _Echo(BaseHTTPRequestHandler):
    #: (status, XML error code or None for a plain-text body): set per test
    answer: tuple[int, str | None] = (400, "InvalidArgument")

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        echoed = f"{self.command} {self.path}\n{self.headers}"
        status, code = self.answer
        if code is None:
            body = f"request was: {echoed}".encode()
        else:
            body = (f"<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>Bad request: "
                    f"{html.escape(echoed)}</Message><RequestId>1</RequestId></Error>").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(params=[(400, "InvalidArgument"), (403, "AccessDenied"), (500, None), (409, "Conflict")],
                ids=["400-xml", "403-xml", "500-text", "409-xml"])
def echo_endpoint(request):
    _Echo.answer = request.param
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def _forms(secret: str) -> list[str]:
    forms = {secret, quote(secret, safe=""), quote_plus(secret), html.escape(secret),
             html.escape(quote(secret, safe="")), base64.b64encode(secret.encode()).decode()}
    return sorted(f for f in forms if len(f) >= 8)


def _assert_clean(text: str, *secrets: str) -> None:
    for secret in secrets:
        for form in _forms(secret):
            assert form not in text, (form, text[:2000])


def test_unit_scrub_every_encoding():
    for form in _forms(SECRET_KEY):
        assert SECRET_KEY not in (scrub(f"error: {form} end", [SECRET_KEY]) or "")
        assert form not in (scrub(f"error: {form} end", [SECRET_KEY]) or "")
    text = "GET /c?restype=container&amp;" + html.escape(SAS) + " HTTP/1.1"
    assert "Zm9vYmFy" not in (scrub(text) or "")  # a sig= value is dropped whatever the secret list says
    auth = "Authorization: AWS4-HMAC-SHA256 Credential=AKIAX/20261204/us-east-1/s3/aws4_request, Signature=abcd1234"
    assert "abcd1234" not in (scrub(auth) or "") and "AKIAX" not in (scrub(auth) or "")


def test_s3_export_errors_hold_no_credentials(tmp_path, echo_endpoint, monkeypatch):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    with spruce.Client(data_dir=str(tmp_path / "data")) as c:
        c.create_index("t", dimension=2)
        c.Index("t").upsert([("a", [1.0, 2.0])])
        opts = {"endpoint_url": echo_endpoint, "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY,
                "region": "us-east-1", "max_retries": 0}
        try:
            job = start_export(c.engine, "t", "s3://bucket/backups/x", storage_options=opts, manager=c.jobs)
        except Exception as exc:  # refused up front: the message is what the user sees
            text = str(exc)
        else:
            job = c.jobs.wait(job.id, timeout=60)
            assert job.status == "Failed"
            text = json.dumps(job.public()) + (tmp_path / "data" / "jobs" / f"{job.id}.json").read_text()
            text += str(c.describe_export(job.id))
        _assert_clean(text, SECRET_KEY, ACCESS_KEY)


def test_azure_export_errors_hold_no_sas_signature(tmp_path, echo_endpoint):
    with spruce.Client(data_dir=str(tmp_path / "data")) as c:
        c.create_index("t", dimension=2)
        c.Index("t").upsert([("a", [1.0, 2.0])])
        opts = {"endpoint_url": f"{echo_endpoint}/acct", "account_name": "acct", "sas_token": SAS,
                "max_retries": 0}
        try:
            job = start_export(c.engine, "t", "az://container/backups/x", storage_options=opts, manager=c.jobs)
        except Exception as exc:
            text = str(exc)
        else:
            job = c.jobs.wait(job.id, timeout=60)
            assert job.status == "Failed"
            text = json.dumps(job.public()) + (tmp_path / "data" / "jobs" / f"{job.id}.json").read_text()
        _assert_clean(text, SAS_SIG, quote(SAS_SIG, safe=""), SAS)


def test_every_job_kind_is_scrubbed_in_one_place(tmp_path, monkeypatch):
    """A runner whose error and notes echo secrets in several encodings: the stored job holds none."""
    from spruce.errors import SpruceError
    from spruce.jobs.manager import RUNNERS, register_runner
    from spruce.jobs.state import JobState, new_job_id

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)

    def leaky(ctx):
        ctx.state.notes.append(f"tried with {html.escape(quote(SECRET_KEY, safe=''))}")
        raise SpruceError(f"endpoint said: GET /x?{html.escape(SAS)} key={quote_plus(SECRET_KEY)} "
                          f"b64={base64.b64encode(SECRET_KEY.encode()).decode()} secret={ctx.storage_options()['sas_token']}")

    register_runner("leaky-test", leaky)
    try:
        with spruce.Client(data_dir=str(tmp_path / "data")) as c:
            state = JobState(id=new_job_id("leaky"), kind="leaky-test", index="t", uri="az://c/x")
            job = c.jobs.submit(state, sync=False, secrets={"sas_token": SAS})
            job = c.jobs.wait(job.id, timeout=30)
            assert job.status == "Failed" and "endpoint said" in job.error
            text = json.dumps(job.public()) + (tmp_path / "data" / "jobs" / f"{job.id}.json").read_text()
            _assert_clean(text, SECRET_KEY, SAS_SIG, quote(SAS_SIG, safe=""), SAS)
    finally:
        RUNNERS.pop("leaky-test", None)


def test_access_log_hides_query_secrets_on_every_path():
    import logging

    from spruce.server.downloads import install_log_filter

    install_log_filter()
    logger = logging.getLogger("uvicorn.access")
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", "/indexes?api_key=k3y-value&limit=5&sig=s1gn", "1.1", 200), None)
    for f in logger.filters:
        f.filter(record)
    line = record.getMessage()
    assert "k3y-value" not in line and "s1gn" not in line and "limit=5" in line and "/indexes" in line
