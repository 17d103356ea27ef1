"""Post/Redirect/Get on the security page: a post that changed something answers 303, so a
browser's reload asks for the page again rather than posting the form a second time; what
the post made to be seen (a notice, new recovery codes, a set-up's key) is shown once, to
the user who posted only."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import httpx
import pyotp
from sqlalchemy import func, select

from identity.accounts.models import User
from identity.audit.models import AuditEvent
from identity.clock import utcnow
from identity.mfa.service import SecondFactor
from identity.runtime import Runtime
from tests.integration.page_helpers import (
    SECURITY,
    other_session,
    post_form,
    sign_in_to_security_page,
    totp_secret,
)
from tests.integration.recovery_helpers import (
    PASSWORD,
    enrolled_user,
    mail_since_enrolment,
    new_user,
)

ANA = "ana@example.com"


def _codes(page: httpx.Response) -> list[str]:
    return re.findall(r"<li data-recovery-code>([0-9a-z-]+)</li>", page.text)


def _to_the_page(posted: httpx.Response) -> str:
    assert posted.status_code == 303, posted.text
    location = posted.headers["location"]
    assert urlsplit(location).path == SECURITY, location
    return location


async def _new_recovery_codes(client: httpx.AsyncClient, runtime: Runtime) -> tuple[User, str]:
    """Ana, enrolled and signed in, replaces her recovery codes: she, and the address the post
    sends her to, which shows the new ones."""
    user, _, old = await enrolled_user(runtime, ANA)
    page = await sign_in_to_security_page(client, ANA, PASSWORD, code=old[0])
    posted = await post_form(client, page, f"{SECURITY}/recovery-codes", current_password=PASSWORD)
    return user, _to_the_page(posted)


async def _replacements(runtime: Runtime) -> int:
    async with runtime.db.transaction() as session:
        statement = select(func.count()).where(AuditEvent.action == "user.recovery_codes_replaced")
        return await session.scalar(statement) or 0


async def test_a_saved_change_redirects_and_its_notice_is_shown_once(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await new_user(runtime, ANA, name="Ana")
    page = await sign_in_to_security_page(client, ANA, PASSWORD, **{"Accept-Language": "es"})
    location = _to_the_page(await post_form(client, page, f"{SECURITY}/name", name="Ana María"))
    assert parse_qs(urlsplit(location).query)["ui_locales"] == ["es"]

    shown = await client.get(location)
    reloaded = await client.get(location)

    assert shown.status_code == 200 and "Se ha guardado tu nombre." in shown.text
    assert reloaded.status_code == 200 and 'role="status"' not in reloaded.text
    assert 'value="Ana María"' in reloaded.text


async def test_new_recovery_codes_are_shown_once_and_a_reload_replaces_nothing(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user, location = await _new_recovery_codes(client, runtime)
    assert not _codes(await client.get(SECURITY))  # the plain page shows none

    shown = await client.get(location)
    reloaded = await client.get(location)

    new = _codes(shown)
    assert len(new) == 10 and "Your old recovery codes no longer work" in shown.text
    assert _codes(reloaded) == [] and "Recovery codes left: 10." in reloaded.text
    assert not any(code in reloaded.text for code in new)
    assert await _replacements(runtime) == 1
    assert len(await mail_since_enrolment(runtime, ANA)) == 1
    # The codes shown are the ones that work.
    async with runtime.db.transaction() as session:
        mfa = SecondFactor.from_runtime(runtime)
        assert await mfa.verify(session, user.id, new[0], utcnow())


async def test_the_set_up_key_is_shown_once_and_its_page_still_turns_it_on(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await new_user(runtime, ANA)
    page = await sign_in_to_security_page(client, ANA, PASSWORD)
    location = _to_the_page(
        await post_form(client, page, f"{SECURITY}/totp", current_password=PASSWORD)
    )

    set_up = await client.get(location)
    reloaded = await client.get(location)

    secret = totp_secret(set_up)
    assert "<svg" in set_up.text
    assert secret not in reloaded.text and "<svg" not in reloaded.text
    done = await post_form(
        client, set_up, f"{SECURITY}/totp/confirm", code=pyotp.TOTP(secret).now()
    )
    codes = await client.get(_to_the_page(done))
    assert len(_codes(codes)) == 10
    assert _codes(await client.get(done.headers["location"])) == []


async def test_what_a_post_left_is_shown_to_its_user_only(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, location = await _new_recovery_codes(client, runtime)
    ana_cookie = client.cookies["identity_session"]
    # Bea signs in to this browser and opens the address in its history.
    bea = await new_user(runtime, "bea@example.com")
    client.cookies.set("identity_session", await other_session(runtime, bea))
    as_bea = await client.get(location)
    assert as_bea.status_code == 200 and _codes(as_bea) == []
    assert "<strong data-email>bea@example.com</strong>" in as_bea.text
    client.cookies.set("identity_session", ana_cookie)
    # Bea's asking spent nothing: Ana, back, still sees her codes, once.
    assert len(_codes(await client.get(location))) == 10
    assert _codes(await client.get(location)) == []
    for made_up in ("x" * 43, "é", "x" * 5000):
        answer = await client.get(SECURITY, params={"shown": made_up})
        assert answer.status_code == 200 and 'role="status"' not in answer.text


async def test_a_head_request_leaves_what_the_page_shows_once_for_the_get(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # A link checker, a prefetch or `curl -I` asks with HEAD: its answer has no body, so
    # spending the handle there lost the new recovery codes while the old ones were gone.
    _, location = await _new_recovery_codes(client, runtime)

    head = await client.head(location)
    shown = await client.get(location)

    assert head.status_code == 200 and head.content == b""
    assert len(_codes(shown)) == 10
