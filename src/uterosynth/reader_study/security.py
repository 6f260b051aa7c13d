"""Secret tokens: generated once, shown once, stored only as SHA-256 hashes.

Tokens carry 256 bits of entropy (``secrets.token_urlsafe(32)``), so an unsalted SHA-256 is
enough to make the stored hash useless to whoever reads the database or ``study.json``; a slow
password hash buys nothing for random tokens. Comparisons use :func:`hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["new_token", "hash_token", "token_matches", "new_id", "MAX_TOKEN_LENGTH"]

MAX_TOKEN_LENGTH = 256


def new_token() -> str:
    """A fresh URL-safe secret (43 characters, 256 bits)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Hex SHA-256 of a token; this is what is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_matches(token: str | None, stored_hash: str) -> bool:
    """Constant-time check of ``token`` against a stored hash; ``None`` or oversized never match."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return False
    return hmac.compare_digest(hash_token(token), stored_hash)


def new_id(nbytes: int = 16) -> str:
    """An opaque random id (lower-case hex) that reveals nothing about what it names."""
    return secrets.token_hex(nbytes)
