"""Archive keys: where they come from, what the manifest says of them, and unlocking an archive.

A key is one of two things (docs/FORMAT.md, "Encryption"):

* a *key file*: exactly 32 random bytes (``spruce key generate FILE``), used as the archive key as is;
* a *passphrase* (only ever from the environment variable ``SPRUCE_ARCHIVE_PASSPHRASE``), stretched
  with scrypt under a random salt drawn per archive; the salt and the scrypt parameters are in the
  manifest.

From the archive key K, HKDF-SHA256 derives the key's *fingerprint* (in the manifest: it tells a
wrong key at once and never reveals K), the key of the manifest's HMAC, and every file's key
(spruce.archive.crypto). Nothing here ever puts K, the key file's bytes or the passphrase into a
message, a repr or a manifest.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from spruce.archive.crypto import (
    DEFAULT_SEGMENT_SIZE,
    SegmentDecryptor,
    SegmentEncryptor,
    check_segment_size,
    decrypt_bytes,
)
from spruce.errors import ArchiveLocked, InvalidArgument, ManifestInvalid, ManifestTampered, WrongKey

if TYPE_CHECKING:
    from spruce.archive.manifest import Manifest

ALGORITHM = "aes256-gcm-hkdf-sha256-stream-v1"
PASSPHRASE_ENV = "SPRUCE_ARCHIVE_PASSPHRASE"
KEY_BYTES = 32
KEY_FILE = "key-file"
PASSPHRASE = "passphrase"
#: scrypt's cost for new archives: N = 2**17, r = 8, p = 1 (128 MiB, the OWASP minimum for scrypt)
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 17, 8, 1
SCRYPT_SALT_BYTES = 16
#: a manifest may ask for at most this much scrypt memory (128 * r * N bytes) before it is trusted
SCRYPT_MAX_MEMORY = 1 << 30
_FINGERPRINT_INFO = b"spruce-archive v1 key fingerprint"
_HMAC_INFO = b"spruce-archive v1 manifest hmac"


def _hkdf(master: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(master)


def fingerprint(master: bytes) -> str:
    """32 hex digits that name an archive key without revealing it."""
    return _hkdf(master, _FINGERPRINT_INFO, 16).hex()


def canonical_json(doc: Any) -> bytes:
    """The manifest's canonical bytes for its HMAC: keys sorted, no whitespace, ASCII only."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")


def _scrypt(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=KEY_BYTES, n=n, r=r, p=p).derive(passphrase.encode("utf-8", "surrogateescape"))


class ArchiveKey:
    """Where an archive key comes from: a key file's 32 bytes, a passphrase, or both (a reader
    then uses the one the archive was written with; a writer refuses both). Its repr names the
    kind and the key file's path, never the key."""

    __slots__ = ("_derived", "_key", "_passphrase", "key_file", "scrypt_n")

    def __init__(self, *, key: bytes | None = None, passphrase: str | None = None, key_file: str | None = None,
                 scrypt_n: int = SCRYPT_N) -> None:
        if key is None and not passphrase:
            raise InvalidArgument("an archive key needs a key file's 32 bytes or a non-empty passphrase")
        if key is not None and len(key) != KEY_BYTES:
            raise InvalidArgument(f"an archive key is exactly {KEY_BYTES} bytes, got {len(key)}")
        if scrypt_n & (scrypt_n - 1) or not 1 << 10 <= scrypt_n <= 1 << 22:
            raise InvalidArgument(f"scrypt_n must be a power of two from 2**10 to 2**22, got {scrypt_n}")
        self._key = None if key is None else bytes(key)
        self._passphrase = passphrase or None
        self.key_file = key_file
        self.scrypt_n = scrypt_n
        self._derived: dict[tuple[bytes, int, int, int], bytes] = {}

    # -- making one ------------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ArchiveKey:
        """The key in ``path`` (exactly 32 bytes). InvalidArgument naming the path, never the content."""
        path = os.path.abspath(os.fspath(path))
        try:
            with open(path, "rb") as f:
                raw = f.read(KEY_BYTES + 1)
        except OSError as exc:
            raise InvalidArgument(f"cannot read the key file {path}: {exc.strerror or exc}") from None
        if len(raw) != KEY_BYTES:
            raise InvalidArgument(f"{path} is not a spruce key file: a key file holds exactly {KEY_BYTES} bytes "
                                  "(make one with `spruce key generate FILE`)")
        return cls(key=raw, key_file=path)

    @classmethod
    def from_passphrase(cls, passphrase: str, *, scrypt_n: int = SCRYPT_N) -> ArchiveKey:
        return cls(passphrase=passphrase, scrypt_n=scrypt_n)

    @classmethod
    def from_env(cls, key_file: str | os.PathLike[str] | None = None, *,
                 environ: Mapping[str, str] | None = None) -> ArchiveKey | None:
        """The key the command line has: ``key_file`` (--key-file) and/or SPRUCE_ARCHIVE_PASSPHRASE;
        None when neither is there."""
        passphrase = (os.environ if environ is None else environ).get(PASSPHRASE_ENV) or None
        if key_file is None:
            return None if passphrase is None else cls(passphrase=passphrase)
        key = cls.from_file(key_file)
        key._passphrase = passphrase
        return key

    @classmethod
    def for_job(cls, options: Mapping[str, Any], *, environ: Mapping[str, str] | None = None) -> ArchiveKey:
        """A job's key again, in a process that did not start the job, from what its state recorded
        (spruce.jobs.encryption): the key file's path, and/or the environment's passphrase."""
        passphrase = (os.environ if environ is None else environ).get(PASSPHRASE_ENV) or None
        if options.get("passphrase") and passphrase is None and not options.get("key_file"):
            raise ArchiveLocked(f"this job's archive key is a passphrase: set {PASSPHRASE_ENV} in the environment "
                                "of the process that runs it")
        if options.get("key_file"):
            key = cls.from_file(options["key_file"])
            key._passphrase = passphrase if options.get("passphrase") else None
            return key
        return cls(passphrase=passphrase)

    # -- what it is ------------------------------------------------------------------------

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(k for k, v in ((KEY_FILE, self._key), (PASSPHRASE, self._passphrase)) if v is not None)

    def writing_kind(self) -> str:
        if self._key is not None and self._passphrase is not None:
            raise InvalidArgument(f"both a key file and {PASSPHRASE_ENV} are given: encrypt with one of them")
        return KEY_FILE if self._key is not None else PASSPHRASE

    @property
    def key_file_fingerprint(self) -> str | None:
        """A key file's fingerprint, as its archives' manifests name it (None for a passphrase alone:
        a passphrase's fingerprint depends on each archive's salt)."""
        return None if self._key is None else fingerprint(self._key)

    def secret_texts(self) -> list[str]:
        """The secrets as text, for scrubbing messages (the passphrase; the key in hex)."""
        return [s for s in (self._passphrase, self._key.hex() if self._key else None) if s]

    def __repr__(self) -> str:
        what = " and ".join(f"key file {self.key_file}" if k == KEY_FILE and self.key_file else k.replace("-", " ")
                            for k in self.kinds)
        return f"ArchiveKey({what})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("an ArchiveKey is not pickled: it stays in the memory of the process given it")

    # -- deriving --------------------------------------------------------------------------

    def _master(self, key_spec: Mapping[str, Any]) -> bytes:
        """K for a manifest's ``encryption.key``; ArchiveLocked when this key has no such kind."""
        kind = key_spec.get("kind")
        if kind == KEY_FILE:
            if self._key is None:
                raise ArchiveLocked("it is encrypted with a key file, and only a passphrase was given: pass --key-file")
            return self._key
        if self._passphrase is None:
            raise ArchiveLocked(f"it is encrypted with a passphrase, and only a key file was given: set {PASSPHRASE_ENV}")
        kdf = key_spec["kdf"]
        salt, n, r, p = bytes.fromhex(kdf["salt"]), kdf["n"], kdf["r"], kdf["p"]
        if n & (n - 1) or 128 * r * n > SCRYPT_MAX_MEMORY:
            raise ManifestInvalid(f"encryption.key.kdf asks scrypt for N={n}, r={r}: not a power of two, or more than "
                                  f"{SCRYPT_MAX_MEMORY >> 20} MiB of memory")
        cached = self._derived.get((salt, n, r, p))
        if cached is None:
            cached = self._derived[(salt, n, r, p)] = _scrypt(self._passphrase, salt, n, r, p)
        return cached

    def new_cipher(self, *, segment_size: int = DEFAULT_SEGMENT_SIZE) -> ArchiveCipher:
        """The cipher of a new archive: a fresh archive nonce, and for a passphrase a fresh scrypt salt."""
        check_segment_size(segment_size)
        kind = self.writing_kind()
        spec: dict[str, Any] = {"kind": kind}
        if kind == PASSPHRASE:
            spec["kdf"] = {"name": "scrypt", "salt": secrets.token_hex(SCRYPT_SALT_BYTES), "n": self.scrypt_n,
                           "r": SCRYPT_R, "p": SCRYPT_P}
        master = self._master(spec)
        spec["fingerprint"] = fingerprint(master)
        return ArchiveCipher(segment_size=segment_size, archive_nonce=secrets.token_bytes(16), key_spec=spec,
                             where="", _master=master)


@dataclass(frozen=True, eq=False, repr=False)
class ArchiveCipher:
    """One encrypted archive's parameters, and its key once unlocked (``locked`` otherwise).

    Data files (SourceFile.cipher) carry it: reading one decrypts it, or raises ArchiveLocked
    when the archive is locked."""

    segment_size: int
    archive_nonce: bytes
    key_spec: Mapping[str, Any]
    where: str  # the archive, for messages
    _master: bytes | None = None

    @property
    def locked(self) -> bool:
        return self._master is None

    @property
    def fingerprint(self) -> str:
        return self.key_spec["fingerprint"]

    @property
    def key_kind(self) -> str:
        return self.key_spec["kind"]

    def __repr__(self) -> str:
        return f"ArchiveCipher({self.where or 'new archive'}, {self.key_kind} {self.fingerprint}, " \
               f"{'locked' if self.locked else 'unlocked'})"

    def __reduce__(self) -> Any:
        raise TypeError("an ArchiveCipher is not pickled: it holds an archive key")

    def _key(self) -> bytes:
        if self._master is None:
            raise ArchiveLocked(locked_message(self.where, self.key_spec))
        return self._master

    def require(self) -> None:
        """ArchiveLocked unless unlocked."""
        self._key()

    def encryptor(self, path: str, out: Any) -> SegmentEncryptor:
        return SegmentEncryptor(self._key(), self.archive_nonce, path, out, segment_size=self.segment_size)

    def decryptor(self, path: str) -> SegmentDecryptor:
        return SegmentDecryptor(self._key(), self.archive_nonce, path, segment_size=self.segment_size)

    def decrypt(self, path: str, data: bytes) -> bytes:
        return decrypt_bytes(self._key(), self.archive_nonce, path, data, segment_size=self.segment_size)

    # -- the manifest's side ------------------------------------------------------------------

    def manifest_fields(self) -> dict[str, Any]:
        """The manifest's ``encryption`` object, its HMAC a placeholder until ``seal``."""
        return {"algorithm": ALGORITHM, "segment_size": self.segment_size, "archive_nonce": self.archive_nonce.hex(),
                "key": dict(self.key_spec), "manifest_hmac": "0" * 64}

    def manifest_hmac(self, doc: Mapping[str, Any]) -> str:
        """HMAC-SHA256 of the manifest document's canonical JSON without ``encryption.manifest_hmac``."""
        body = dict(doc)
        body["encryption"] = {k: v for k, v in doc["encryption"].items() if k != "manifest_hmac"}
        mac_key = _hkdf(self._key(), _HMAC_INFO)
        return hmac.new(mac_key, canonical_json(body), hashlib.sha256).hexdigest()

    def seal(self, manifest: Manifest) -> Manifest:
        enc = dict(manifest.encryption or {})
        return replace(manifest, encryption={**enc, "manifest_hmac": self.manifest_hmac(manifest.to_dict())})


def locked_message(where: str, key_spec: Mapping[str, Any]) -> str:
    if key_spec.get("kind") == KEY_FILE:
        kind, hint = "a key file", "pass --key-file FILE, the key file it was written with"
    else:
        kind, hint = "a passphrase", f"set {PASSPHRASE_ENV} to the passphrase it was written with"
    return (f"{where or 'the archive'}: the archive is encrypted (with {kind}, fingerprint "
            f"{key_spec.get('fingerprint')}) and no key was given: {hint}")


def unlock(manifest: Manifest, key: ArchiveKey | None, where: str) -> ArchiveCipher | None:
    """The archive's cipher: None when it is not encrypted; locked without ``key``; else unlocked,
    after checking the key's fingerprint (WrongKey) and the manifest's HMAC (ManifestTampered)."""
    enc = manifest.encryption
    if enc is None:
        return None
    spec = enc["key"]
    cipher = ArchiveCipher(segment_size=enc["segment_size"], archive_nonce=bytes.fromhex(enc["archive_nonce"]),
                           key_spec=spec, where=where)
    if key is None:
        return cipher
    try:
        master = key._master(spec)
    except ArchiveLocked as exc:
        raise ArchiveLocked(f"{where}: {exc}") from None
    except ManifestInvalid as exc:
        raise ManifestInvalid(f"{where}/manifest.json: {exc}") from None
    if not hmac.compare_digest(fingerprint(master), spec["fingerprint"]):
        what = "key file" if spec["kind"] == KEY_FILE else "passphrase"
        raise WrongKey(f"{where}: wrong key: the archive was encrypted with a {what} whose fingerprint is "
                       f"{spec['fingerprint']}, and the {what} given is another")
    cipher = replace(cipher, _master=master)
    if not hmac.compare_digest(cipher.manifest_hmac(manifest.to_dict()), enc["manifest_hmac"]):
        raise ManifestTampered(f"{where}/manifest.json: its HMAC does not match its content: the manifest was "
                               "edited by someone without the key; nothing of the archive is read")
    return cipher


def same_key(manifest: Manifest, key: ArchiveKey | None) -> bool:
    """Was ``manifest``'s archive encrypted with ``key`` (both unencrypted counts)? Never raises."""
    if manifest.encryption is None or key is None:
        return manifest.encryption is None and key is None
    try:
        return unlock(manifest, key, "") is not None
    except Exception:
        return False


def generate_key_file(path: str | os.PathLike[str]) -> str:
    """Write 32 random bytes to a new file ``path`` (mode 0600; never over an existing file).
    Returns the key's fingerprint."""
    path = os.fspath(path)
    key = secrets.token_bytes(KEY_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, key)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)
    return fingerprint(key)
