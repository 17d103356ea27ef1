"""Password storage: argon2id with the policy's parameters, run off the event loop.

``Passwords`` bundles the policy and the hasher: everything that sets or checks a password
takes this one object, built once per process from the settings.

Argon2 runs on threads of its own at a lower scheduling priority (Linux gives each thread
its own nice value). A burst of sign-ins keeps every CPU hashing; at the same priority the
event loop's thread got only its share of them, and every other request (discovery, token,
the sign-ins' own pages) queued behind the hashing. Niced, the hashing takes what the
event loop leaves, and the sign-in rate when nothing else is asked is the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import threading
import unicodedata
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import anyio
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from identity.accounts.password_generator import generate
from identity.accounts.password_policy import RAW_LENGTH_FACTOR, PasswordPolicy, Verdict
from identity.accounts.password_policy_file import load_policy
from identity.settings import Settings

HASHING_NICENESS = 10  # added to the process's; at 10, CFS weighs a thread ~1/10 of a normal one

T = TypeVar("T")


def _lower_priority() -> None:
    # os.setpriority on a thread id is per thread on Linux only; elsewhere the hashing
    # simply runs at the process's priority.
    if hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
        with contextlib.suppress(OSError):
            thread = threading.get_native_id()
            current = os.getpriority(os.PRIO_PROCESS, thread)
            os.setpriority(os.PRIO_PROCESS, thread, min(19, current + HASHING_NICENESS))


def password_bytes(password: str) -> bytes:
    """What argon2 hashes: the NFKC form (NIST 800-63B §3.1.1.2), so a password typed on
    another keyboard or OS, composed differently, still matches. ``surrogatepass`` turns a
    lone surrogate from a hostile JSON body into bytes that match nothing, not an error."""
    return unicodedata.normalize("NFKC", password).encode("utf-8", "surrogatepass")


@dataclass(frozen=True, slots=True, eq=False)
class Passwords:
    policy: PasswordPolicy
    product_name: str
    hasher: PasswordHasher
    # Each hash holds memory_kib for its duration: max_concurrency threads bound the memory,
    # and more threads than CPUs would only queue inside the kernel instead of here.
    hashing: ThreadPoolExecutor
    # The hash an unknown email is verified against, so it costs what a known one costs.
    dummy_hash: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Passwords:
        return cls.from_policy(load_policy(settings.password_policy_path), settings.product_name)

    @classmethod
    def from_policy(cls, policy: PasswordPolicy, product_name: str) -> Passwords:
        argon2 = policy.argon2
        hasher = PasswordHasher(
            time_cost=argon2.time_cost,
            memory_cost=argon2.memory_kib,
            parallelism=argon2.parallelism,
            hash_len=argon2.hash_length,
            salt_len=argon2.salt_length,
            type=Type.ID,
        )
        dummy = hasher.hash(secrets.token_bytes(32))
        hashing = ThreadPoolExecutor(
            argon2.max_concurrency, thread_name_prefix="argon2", initializer=_lower_priority
        )
        return cls(policy, product_name, hasher, hashing, dummy)

    @property
    def max_bytes(self) -> int:
        # A stored password is at most max_length characters of 4 UTF-8 bytes; anything
        # longer cannot match and is refused before argon2 reads it.
        return self.policy.rules.max_length * RAW_LENGTH_FACTOR

    async def check(self, password: str, *, email: str = "", name: str = "") -> Verdict:
        """The policy's verdict, computed in a thread: zxcvbn takes up to ~20 ms."""
        return await anyio.to_thread.run_sync(self._check, password, email, name)

    def _check(self, password: str, email: str, name: str) -> Verdict:
        return self.policy.check(password, email=email, name=name, product_name=self.product_name)

    async def hash(self, password: str) -> str:
        """The argon2id PHC string for a password the policy has accepted."""
        return await self._on_hashing_thread(self.hasher.hash, password_bytes(password))

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches; with no stored hash, the same work and False."""
        if len(password) > self.max_bytes:
            return False
        data = password_bytes(password)
        if len(data) > self.max_bytes:
            return False
        return await self._on_hashing_thread(self._verify, stored_hash, data)

    async def _on_hashing_thread(self, work: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.hashing, work, *args)

    def close(self) -> None:
        """Let the hashing threads end once their work is done (the runtime is closing)."""
        self.hashing.shutdown(wait=False)

    def _verify(self, stored_hash: str | None, data: bytes) -> bool:
        try:
            matched = self.hasher.verify(stored_hash or self.dummy_hash, data)
        except (VerificationError, InvalidHashError):
            return False
        return matched and stored_hash is not None

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when the stored hash was made with other parameters than the policy's."""
        return self.hasher.check_needs_rehash(stored_hash)

    def generate(self, length: int | None = None, *, email: str = "", name: str = "") -> str:
        """A policy-passing password, one this user on this service may set (see ``check``)."""
        return generate(self.policy, length, email=email, name=name, product_name=self.product_name)
