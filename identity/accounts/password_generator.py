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
# Generation keeps drawing until the policy accepts (a draw can still score too weak, or
# spell the user's name); far more draws than this would mean a policy nothing can pass.
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


def _draw(policy: PasswordPolicy, length: int) -> str:
    """A random candidate of ``length`` characters, one of each class at least.

    Under a policy that refuses a listed word anywhere, each character is drawn among those
    that end no listed word there, so the candidate spells none: with three-letter words
    from long lists, a random 16-character string spelt one 49 times in 50 and nearly every
    64-character one did, each costing a full check before the next draw. The full check
    still decides; it now seldom refuses.
    """
    wanted = [*CLASSES.values()] + [ALPHABET] * (length - len(CLASSES))
    _SHUFFLER.shuffle(wanted)  # so the guaranteed classes are not always first
    if policy.rules.dictionary != "contains":
        return "".join(secrets.choice(members) for members in wanted)
    drawn = ""
    for members in wanted:
        # Every member in random order: the first that ends no word is a uniform choice
        # among those that do not. When none does, the full check refuses the candidate.
        order = _SHUFFLER.sample(members, len(members))
        drawn += next((ch for ch in order if not policy.ends_in_listed_word(drawn + ch)), order[0])
    return drawn


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
        candidate = _draw(policy, length)
        verdict = policy.check(candidate, email=email, name=name, product_name=product_name)
        if verdict.accepted:
            return candidate
    raise NothingToPropose(
        f"No random password of {length} characters passed the password policy; "
        "ask for a shorter one, or choose one yourself."
    )
