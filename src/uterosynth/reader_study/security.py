"""Secret tokens: generated once, shown once, stored only as SHA-256 hashes.

Tokens carry 256 bits of entropy (``secrets.token_urlsafe(32)``), so an unsalted SHA-256 is
enough to make the stored hash useless to whoever reads the database or ``study.json``; a slow
password hash buys nothing for random tokens. Comparisons use :func:`hmac.compare_digest`.

Orders that blind the study (which item comes first for a rater, which is written to disk
first) come from the same cryptographic source (:func:`secure_permutation`), never from the
public ``--seed``: nobody can recompute them from the study's inputs.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import secrets

__all__ = ["new_token", "hash_token", "token_matches", "new_id", "secure_permutation", "MAX_TOKEN_LENGTH"]

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


def secure_permutation(n: int) -> list[int]:
    """A uniformly random permutation of ``range(n)`` from the operating system's CSPRNG.

    Unlike a seeded generator it cannot be recomputed from any input, so an order drawn here
    tells nothing to someone who knows the code, the seed and the data.
    """
    order = list(range(n))
    random.SystemRandom().shuffle(order)
    return order
