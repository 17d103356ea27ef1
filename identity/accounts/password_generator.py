"""Passwords proposed by the "generate password" button: random, readable aloud, policy-passing."""

from __future__ import annotations

import secrets

from identity.accounts.password_policy import PasswordPolicy
from identity.errors import DomainError, InvalidInput

# Characters that are easy to tell apart in any font: no 0/O/o, 1/l/I/i, 5/S, 2/Z, 8/B, and
# no quotes, backslash or | that a terminal or a form might treat specially.
CLASSES = {
    "lower": "abcdefghjkmnpqrtuvwxyz",
    "upper": "ACDEFGHJKLMNPQRTUVWXY",
    "digit": "34679",
    "symbol": "#$%&*+-=?@^_",
}
ALPHABET = "".join(CLASSES.values())
DEFAULT_LENGTH = 16
# Generation keeps drawing until the policy accepts (a random draw can spell a listed word);
# far more draws than this would mean a policy no random password can pass.
MAX_DRAWS = 1000
_SHUFFLER = secrets.SystemRandom()


class NothingToPropose(DomainError):
    """Every draw spelled something the policy refuses: a policy listing very short words
    from very long lists finds one in nearly any long random string (digits and symbols
    read as letters). The service is fine; a shorter password may be found."""

    code = "no-password-to-propose"
    status = 503


def length_bounds(policy: PasswordPolicy) -> tuple[int, int]:
    # At least one character of each class, and never shorter than 12 (~75 bits).
    return max(policy.rules.min_length, len(CLASSES), 12), policy.rules.max_length


def generate(
    policy: PasswordPolicy,
    length: int | None = None,
    *,
    email: str = "",
    name: str = "",
    product_name: str = "",
) -> str:
    """A password of ``length`` characters, one of each class at least, that ``policy`` accepts.

    Without a length, ``DEFAULT_LENGTH`` or the policy's minimum when that is longer.

    The user's details and the product's name are checked too, when known: a random draw can
    spell them (``N3w`` for a user called New), and a proposal the form then refuses is worse
    than none.
    """
    low, high = length_bounds(policy)
    if length is None:
        length = max(DEFAULT_LENGTH, low)
    if not low <= length <= high:
        raise InvalidInput(f"The length must be from {low} to {high} characters.")
    for _ in range(MAX_DRAWS):
        chars = [secrets.choice(members) for members in CLASSES.values()]
        chars += [secrets.choice(ALPHABET) for _ in range(length - len(chars))]
        _SHUFFLER.shuffle(chars)  # so the guaranteed characters are not always first
        candidate = "".join(chars)
        verdict = policy.check(candidate, email=email, name=name, product_name=product_name)
        if verdict.accepted:
            return candidate
    raise NothingToPropose(
        f"No random password of {length} characters passed the password policy; "
        "ask for a shorter one, or choose one yourself."
    )
