"""API keys: only their sha256 digests are stored, and a presented key is checked against
every digest in constant time.

A key is shown once, by `denial-model keygen`; the operator keeps the digest in
`DENIAL_MODEL_API_KEYS` (comma-separated) or in a file given with `--api-keys` (one digest a
line, `#` comments). A leaked digest list does not let anyone call the service.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

from denial_model.errors import ConfigError

__all__ = ["KEYS_ENV", "KeyCheck", "digest", "load_digests", "new_key"]

KEYS_ENV = "DENIAL_MODEL_API_KEYS"
_HEX64 = re.compile(r"[0-9a-f]{64}")


def digest(key: str) -> str:
    """The sha256 hex digest of a key (what the service stores)."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """(a new random key, its digest): 256 bits from the system's CSPRNG."""
    key = "dmk_" + secrets.token_urlsafe(32)
    return key, digest(key)


def _checked(value: str, where: str) -> str:
    value = value.strip().lower()
    if not _HEX64.fullmatch(value):
        shown = value[:20] + "..." if len(value) > 20 else value
        raise ConfigError(
            f"{where}: {shown!r} is not a sha256 hex digest (64 hex digits); store digests, not keys "
            "(`denial-model keygen` prints both)"
        )
    return value


def load_digests(file: str | Path | None = None, env: str | None = None) -> frozenset[str]:
    """Digests from `file` (one a line) and the environment variable (comma-separated)."""
    found: list[str] = []
    env = os.environ.get(KEYS_ENV, "") if env is None else env
    for item in (x for x in env.split(",") if x.strip()):
        found.append(_checked(item, KEYS_ENV))
    if file is not None:
        path = Path(file)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"--api-keys {path}: cannot read it ({exc.strerror})") from None
        for n, line in enumerate(text.splitlines(), start=1):
            line = line.split("#", 1)[0]
            if line.strip():
                found.append(_checked(line, f"{path} line {n}"))
    return frozenset(found)


class KeyCheck:
    """Is `Authorization: Bearer KEY` one of the configured keys? Every digest is compared
    (no early exit), each comparison in constant time."""

    def __init__(self, digests: frozenset[str]):
        self.digests = tuple(sorted(digests))

    def allows(self, authorization: str | None) -> bool:
        scheme, _, key = (authorization or "").partition(" ")
        presented = digest(key.strip()) if scheme.lower() == "bearer" and key.strip() else "-" * 64
        ok = False
        for d in self.digests:
            ok |= hmac.compare_digest(presented, d)
        return ok
