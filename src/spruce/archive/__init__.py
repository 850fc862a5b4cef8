"""Archives: lossless, checksummed export/restore files, and plain files to restore from.

The format is specified in docs/FORMAT.md; the manifest's JSON Schema is
``archive.schema.json`` beside this file (identical to docs/archive.schema.json).
"""

from spruce.archive.decode import OnError
from spruce.archive.keys import PASSPHRASE_ENV, ArchiveCipher, ArchiveKey, generate_key_file
from spruce.archive.manifest import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST_NAME,
    FileEntry,
    Manifest,
    NamespaceEntry,
    load_schema,
    parse_manifest,
)
from spruce.archive.naming import DEFAULT_DIR, decode_dir, encode_namespace
from spruce.archive.parquet import IMPORT_SCHEMA
from spruce.archive.plain import Source, open_source
from spruce.archive.reader import ArchiveReader, SourceFile, check_file_bytes, read_data_file
from spruce.archive.verify import Problem, VerifyReport, verify_archive
from spruce.archive.writer import (
    DEFAULT_GZIP_LEVEL,
    DEFAULT_PARQUET_CODEC,
    DEFAULT_PART_MAX_BYTES,
    DEFAULT_PART_MAX_RECORDS,
    ArchiveWriter,
)

__all__ = [
    "DEFAULT_DIR",
    "DEFAULT_GZIP_LEVEL",
    "DEFAULT_PARQUET_CODEC",
    "DEFAULT_PART_MAX_BYTES",
    "DEFAULT_PART_MAX_RECORDS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "IMPORT_SCHEMA",
    "MANIFEST_NAME",
    "PASSPHRASE_ENV",
    "ArchiveCipher",
    "ArchiveKey",
    "ArchiveReader",
    "ArchiveWriter",
    "FileEntry",
    "Manifest",
    "NamespaceEntry",
    "OnError",
    "Problem",
    "Source",
    "SourceFile",
    "VerifyReport",
    "check_file_bytes",
    "decode_dir",
    "encode_namespace",
    "generate_key_file",
    "load_schema",
    "open_source",
    "parse_manifest",
    "read_data_file",
    "verify_archive",
]
