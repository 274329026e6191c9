"""The local development key-encryption key: a Tink AES256-GCM keyset in ``.local/``.

It stands in for Cloud KMS while Firestore is the emulator, so the local stack and the tests
seal and open credentials exactly as production does. The keyset is made on first use (mode
0600, in a 0700 directory; ``.local/`` is never committed) by whichever process of the
local stack gets there first: each writes a complete keyset to a temporary file and links it
into place, a link never replaces a file, and every process then reads the one that won.

Rotation (:func:`rotate`) adds a key and makes it the primary, as a Cloud KMS rotation makes
a new primary version: the old keys still unwrap what they wrapped. Every process notices
the changed file at its next operation and reloads it.

A KMS outage on demand: while ``kms-outage-{project}`` exists beside the keyset
(:func:`set_outage`), every operation of that project's local KEK raises ``KmsUnavailable``,
as Cloud KMS unavailable would; other projects (other stacks, other tests) are unaffected.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import tink
from tink import aead, json_proto_keyset_format, secret_key_access

from agenttrader.errors import KmsUnavailable

DEFAULT_DIRECTORY = Path(__file__).resolve().parents[2] / ".local" / "credentials"
"""``.local/credentials/`` at the repository root, shared by every process of a checkout."""
KEYSET_FILE = "kek.json"
_ROTATION_LOCK = "kek.lock"
_PROJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")

_Stamp = tuple[int, int, int]
"""Inode, modification time and size: a replaced or rewritten keyset file changes it."""


def outage_flag(project: str, directory: Path = DEFAULT_DIRECTORY) -> Path:
    """The file whose existence makes ``project``'s local KEK fail."""
    if not _PROJECT.fullmatch(project):
        raise ValueError("project must be a project id (letters, digits, '.', '_' or '-')")
    return directory / f"kms-outage-{project}"


def set_outage(project: str, down: bool, directory: Path = DEFAULT_DIRECTORY) -> None:
    """Start (``down``) or end a simulated KMS outage for ``project``'s local KEK."""
    flag = outage_flag(project, directory)
    if down:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        flag.touch()
    else:
        flag.unlink(missing_ok=True)


class LocalKek(aead.Aead):
    """A Tink ``Aead`` over the local keyset, for :class:`~tink.aead.KmsEnvelopeAead`."""

    def __init__(self, project: str, directory: Path = DEFAULT_DIRECTORY) -> None:
        aead.register()
        self._flag = outage_flag(project, directory)
        self._path = directory / KEYSET_FILE
        self._lock = threading.Lock()
        self._loaded: tuple[_Stamp, aead.Aead] | None = None

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> bytes:
        return self._primitive().encrypt(plaintext, associated_data)

    def decrypt(self, ciphertext: bytes, associated_data: bytes) -> bytes:
        return self._primitive().decrypt(ciphertext, associated_data)

    def _primitive(self) -> aead.Aead:
        if self._flag.exists():
            raise KmsUnavailable("the local development KEK is failing on demand (KMS outage)")
        with self._lock:
            loaded = self._loaded
            if loaded is None or loaded[0] != _stamp(self._path):
                stamp, text = _read_or_create(self._path)
                handle = json_proto_keyset_format.parse(text, secret_key_access.TOKEN)
                # Tink's idiom: the primitive is asked for by its abstract interface.
                primitive = handle.primitive(aead.Aead)  # type: ignore[type-abstract]
                loaded = self._loaded = (stamp, primitive)
            return loaded[1]


def rotate(directory: Path = DEFAULT_DIRECTORY) -> int:
    """Add a new key to the local keyset and make it the primary; returns its key id.

    Rotations are serialised by a lock file; the keyset is replaced atomically.
    """
    path = directory / KEYSET_FILE
    _read_or_create(path)
    with _exclusive(directory / _ROTATION_LOCK):
        keyset = json.loads(path.read_text())
        taken = {key["keyId"] for key in keyset["key"]}
        while True:
            fresh = json.loads(_new_keyset())["key"][0]
            if fresh["keyId"] not in taken:
                break
        keyset["key"].append(fresh)
        keyset["primaryKeyId"] = fresh["keyId"]
        text = json.dumps(keyset, indent=2)
        json_proto_keyset_format.parse(text, secret_key_access.TOKEN)  # refuse to write junk
        _publish(path, text, replace=True)
        return int(fresh["keyId"])


def _stamp(path: Path) -> _Stamp | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _read_or_create(path: Path) -> tuple[_Stamp, str]:
    """The keyset file's stamp and text, read from one open file; made first if missing."""
    for _ in range(3):
        try:
            with path.open(encoding="utf-8") as file:
                st = os.fstat(file.fileno())
                return (st.st_ino, st.st_mtime_ns, st.st_size), file.read()
        except FileNotFoundError:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _publish(path, _new_keyset(), replace=False)
    raise KmsUnavailable("the local development KEK file keeps disappearing")


def _new_keyset() -> str:
    aead.register()  # rotate() may be the first Tink use of the process
    handle = tink.new_keyset_handle(aead.aead_key_templates.AES256_GCM)
    return json_proto_keyset_format.serialize(handle, secret_key_access.TOKEN)


def _publish(path: Path, text: str, *, replace: bool) -> None:
    """Put ``text`` at ``path`` whole or not at all (mode 0600). ``replace=False`` leaves an
    existing file alone: the first process to publish wins, the others read its keyset."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".kek-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        if replace:
            os.replace(temporary, path)
        else:
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
