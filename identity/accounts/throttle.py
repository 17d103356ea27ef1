"""Sign-in throttling: consecutive failures per account and per client address, the
address's count holding wrong second-factor codes too.

Counters live in ``runtime.limiter`` (Redis when configured, so every server process shares
them) in fixed windows that expire on their own: a victim's account is never locked for
longer than one window, however many times an attacker fails. A success clears the
account's counter but not the address's, so signing in to one's own account cannot buy an
attacker more guesses elsewhere.

Each attempt is counted before its password is checked (``admit``) and a success gives
the count back: a burst of guesses sent at once then gets no more checks than the limit,
where asking "blocked?" first and counting failures after would let all of it through.
"""

from __future__ import annotations

from identity.accounts.emails import normalise_email
from identity.errors import InvalidInput, RateLimited
from identity.metrics import SIGN_INS
from identity.settings import Settings
from identity.store.rate_limit import Limit, RateLimiter


def _account_key(email: str) -> str:
    """The address as sign-in looks it up, so that every spelling of one account (accents
    composed or not, a Unicode or punycode domain) spends one count. Unknown emails are
    counted like known ones, so the throttle reveals nothing; text that is no address at
    all signs in to nobody, and is counted as typed."""
    try:
        return normalise_email(email)
    except InvalidInput:
        return email.strip().lower()


class SignInThrottle:
    def __init__(self, limiter: RateLimiter, settings: Settings) -> None:
        self._limiter = limiter
        window = settings.login_lockout
        self._per_account = Limit("signin-account", settings.login_max_failures, window)
        self._per_ip = Limit("signin-ip", settings.login_max_failures_per_ip, window)

    async def admit(self, email: str, ip: str) -> bool:
        """Count this attempt against both limits; ``RateLimited``, with the time left in
        the window of the limit that refused, when either is used up: refuse without
        checking the password. Every admitted attempt ends in ``failed`` (it stays counted)
        or ``succeeded``. Whether this attempt is the last either limit allows for now,
        known from the counts themselves: only behind that one can the same post again
        (a double click) be refused."""
        # The address first: a client refused for it makes no counter for each email it
        # names, which in bounded memory would push out older counters, its own among them.
        verdict = await self._limiter.hit(self._per_ip, ip)
        if verdict.allowed:
            by_ip = verdict
            verdict = await self._limiter.hit(self._per_account, _account_key(email))
            if verdict.allowed:
                return by_ip.left == 0 or verdict.left == 0
            # Refused for the account: nothing was tried from this address.
            await self._limiter.release(self._per_ip, ip)
        SIGN_INS.labels("throttled").inc()
        raise RateLimited("Too many failed sign-in attempts; try again later.", verdict.retry_after)

    async def admit_code(self, ip: str) -> None:
        """Count a second-factor code against the client address's limit before it is
        checked: a wrong code is a failed sign-in from that address as a wrong password is.
        The user's own count of codes is identity.mfa's; counted per user alone, one client
        holding many users' passwords (a leaked list) guessed each user's codes in full.
        ``RateLimited`` when the address's attempts are used up; ``not_failed`` gives the
        attempt back when the code was right or not checked."""
        verdict = await self._limiter.hit(self._per_ip, ip)
        if not verdict.allowed:
            raise RateLimited(
                "Too many failed sign-in attempts; try again later.", verdict.retry_after
            )

    async def not_failed(self, ip: str) -> None:
        """Give back the address's count of an attempt ``admit_code`` admitted that was no
        failure: a right code, or one refused unchecked (the user's own limit)."""
        await self._limiter.release(self._per_ip, ip)

    def failed(self) -> None:
        # Every password sign-in ends in exactly one of throttled, failed or succeeded, so
        # the sign-in outcomes are counted here.
        SIGN_INS.labels("failed").inc()

    async def succeeded(self, email: str, ip: str) -> None:
        SIGN_INS.labels("succeeded").inc()
        # One store call, not two: the sign-in's round trips are most of its cost beyond argon2.
        await self._limiter.release_and_reset(
            self._per_ip, ip, self._per_account, _account_key(email)
        )
