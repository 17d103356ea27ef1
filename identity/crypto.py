"""Random tokens, digests of secrets and encryption at rest, in one place."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def random_token(nbytes: int = 32) -> str:
    """URL-safe random text carrying ``nbytes`` bytes of entropy (32 bytes = 256 bits)."""
    return secrets.token_urlsafe(nbytes)


def digest(secret: str) -> str:
    """SHA-256 hex digest: how high-entropy secrets (tokens, client secrets) are stored."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def digest_matches(secret: str, expected_digest: str) -> bool:
    """Constant-time comparison of a secret against a digest, stored or posted: as bytes,
    since compare_digest refuses a str with non-ASCII characters (TypeError)."""
    return hmac.compare_digest(
        digest(secret).encode(), expected_digest.encode("utf-8", "surrogatepass")
    )


class DecryptionFailed(Exception):
    """Stored ciphertext could not be opened with the configured secret key."""


class Encryptor:
    """Authenticated encryption of values stored at rest (signing keys, TOTP secrets).

    The Fernet key is derived from the service secret with HKDF and a purpose label, so
    the secret key itself never encrypts anything directly.
    """

    def __init__(self, secret_key: str, purpose: str) -> None:
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=f"identity:{purpose}".encode()
        ).derive(secret_key.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise DecryptionFailed("stored secret does not open with IDENTITY_SECRET_KEY") from None
