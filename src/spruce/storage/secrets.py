"""Scrub credentials from any text before it is stored or shown: one place for every job kind.

Why encodings matter: a storage endpoint that echoes the request puts a secret in its error
body URL-encoded, XML-escaped (``&amp;sig=``), or both, and some libraries base64 them. A
scrubber that only looks for the raw value lets the signature through into job files and API
answers. So each known secret is removed in every spelling, and signature-like fields are
removed by name whatever their value.
"""

from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

#: Environment variables that hold secrets (and the access key ids that name them).
SECRET_ENV_VARS = (
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_TOKEN", "AWS_ACCESS_KEY_ID",
    "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_ACCESS_KEY", "AZURE_STORAGE_MASTER_KEY",
    "AZURE_STORAGE_SAS_KEY", "AZURE_STORAGE_SAS_TOKEN", "AZURE_CLIENT_SECRET", "AZURE_STORAGE_CLIENT_SECRET",
    "AZURE_STORAGE_TOKEN", "GOOGLE_SERVICE_ACCOUNT_KEY", "GOOGLE_BEARER_TOKEN",
    "PINECONE_API_KEY", "SPRUCE_API_KEY", "QDRANT_API_KEY", "PGPASSWORD", "CHROMA_API_KEY", "MILVUS_TOKEN",
)
#: Option names whose values are secrets (storage options and connector keys).
SECRET_OPTION_NAMES = frozenset({
    "access_key_id", "secret_access_key", "session_token", "account_key", "sas_token", "pinecone_api_key",
    "api_key", "password", "token",
})

_AMP = r"(?:&|&amp;|%26)"
_EQ = r"(?:=|%3D)"
# query parameters and header fields that carry signatures or tokens, by name
_NAMED = [
    re.compile(rf"((?:^|[?\s\"'>]|{_AMP})(?:sig|signature|X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|"
               rf"AWSAccessKeyId|Signature|se|st|skoid|sktid|api_key|apikey|token|access_token){_EQ})"
               r"[^&\s\"'<]+", re.IGNORECASE),
    re.compile(r"((?:Credential|Signature)=)[^,\s\"'<]+"),
    re.compile(r"((?:x-amz-security-token|x-ms-copy-source-authorization|authorization|api-key|x-api-key)"
               r"\s*[:=]\s*)[^\r\n<\"']+", re.IGNORECASE),
    re.compile(r"(<(?:Signature|SignatureProvided|AWSAccessKeyId|StringToSign|CanonicalRequest)>)[^<]*"),
]
_USERINFO = re.compile(r"([a-z][a-z0-9+.-]*://)[^/\s@]+@", re.IGNORECASE)


def known_secrets(extra: Iterable[str | None] = ()) -> list[str]:
    """Secrets from the environment plus ``extra`` (e.g. a job's in-memory storage options)."""
    found = [os.environ.get(v) for v in SECRET_ENV_VARS]
    return [s for s in (*found, *extra) if s and len(s) >= 4]


def _spellings(secret: str) -> set[str]:
    forms = {secret, quote(secret, safe=""), quote_plus(secret), quote(secret, safe="/")}
    forms |= {html.escape(f) for f in list(forms)}
    forms |= {quote(f, safe="") for f in list(forms)}
    raw = secret.encode()
    forms |= {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode(),
              base64.b64encode(raw).decode().rstrip("=")}
    return {f for f in forms if len(f) >= 4}


def scrub(text: str | None, secrets: Iterable[str | None] = ()) -> str | None:
    """``text`` with every known secret (in every encoding) and every signature-like field
    replaced by ``***``, and userinfo dropped from URLs."""
    if not text:
        return text
    for secret in sorted({f for s in known_secrets(secrets) for f in _spellings(s)}, key=len, reverse=True):
        text = text.replace(secret, "***")
    for pattern in _NAMED:
        text = pattern.sub(r"\1***", text)
    return _USERINFO.sub(r"\1", text)


def secret_values(options: dict[str, object] | None) -> list[str]:
    """The secret values among ``options`` (by name)."""
    return [str(v) for k, v in (options or {}).items() if k in SECRET_OPTION_NAMES and v]
