"""The TOTP enrolment QR code: it holds the longest product name beside the longest email,
and is drawn off the event loop.

segno raises DataOverflowError when the provisioning URI outgrows the largest QR code
(version 40, level M, 2331 bytes): the product name appears there twice, percent-encoded.
segno is pure Python: a code that large costs up to 220 ms of CPU.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import select, update

from identity.accounts.models import User
from identity.clock import utcnow
from identity.mfa import totp
from identity.mfa.service import SecondFactor
from identity.runtime import Runtime
from identity.settings import MAX_PRODUCT_NAME, Settings, SettingsError
from tests.integration.page_helpers import (
    SECURITY,
    followed,
    post_form,
    sign_in_to_security_page,
    totp_secret,
)
from tests.integration.recovery_helpers import PASSWORD, new_user
from tests.wrong_codes import wrong_code

WIDE = "\U00020000"  # a letter 4 bytes long in UTF-8: 12 once percent-encoded
# The longest address sign-in reads. New addresses stop at 254 octets (what a mail server
# takes); one this long belongs to an account made before that rule, which still enrols.
LONGEST_EMAIL = WIDE * 64 + "@" + ".".join(["a" * 63] * 3 + ["b" * 61])


async def account_from_before_the_mail_limit(runtime: Runtime) -> None:
    user = await new_user(runtime, "older@example.com")
    async with runtime.db.transaction() as session:
        await session.execute(update(User).where(User.id == user.id).values(email=LONGEST_EMAIL))


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    return env | {"IDENTITY_PRODUCT_NAME": WIDE * MAX_PRODUCT_NAME}


def test_a_product_name_too_long_for_the_qr_code_stops_start_up(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match="IDENTITY_PRODUCT_NAME must be at most"):
        Settings.from_env(env | {"IDENTITY_PRODUCT_NAME": "x" * (MAX_PRODUCT_NAME + 1)})


async def test_the_longest_product_name_and_email_fit_the_qr_code(runtime: Runtime) -> None:
    await account_from_before_the_mail_limit(runtime)
    async with runtime.db.transaction() as session:
        user = await session.scalar(select(User).where(User.email == LONGEST_EMAIL))
    assert user is not None
    async with runtime.db.transaction() as session:
        enrolment = await SecondFactor.from_runtime(runtime).begin_enrolment(
            session, user, utcnow()
        )
    assert enrolment.qr_svg.startswith("<svg")


async def test_the_qr_code_is_drawn_off_the_event_loop(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn_on: list[str] = []
    draw = totp.qr_svg

    def spy(uri: str) -> str:
        try:
            asyncio.get_running_loop()
            drawn_on.append("event loop")
        except RuntimeError:
            drawn_on.append("worker thread")
        return draw(uri)

    monkeypatch.setattr(totp, "qr_svg", spy)
    await account_from_before_the_mail_limit(runtime)
    page = await sign_in_to_security_page(client, LONGEST_EMAIL, PASSWORD)
    enrol = await followed(
        client, await post_form(client, page, f"{SECURITY}/totp", current_password=PASSWORD)
    )
    wrong = await post_form(
        client, enrol, f"{SECURITY}/totp/confirm", code=wrong_code(totp_secret(enrol))
    )
    assert wrong.status_code == 400
    assert "<svg" in enrol.text and "<svg" in wrong.text
    assert drawn_on == ["worker thread", "worker thread"]
