"""Turning two-step verification on or off from the Spanish security page tells a user who
chose no language in Spanish, as replacing the recovery codes or changing the password
from that page does."""

from __future__ import annotations

import httpx
import pyotp

from identity.runtime import Runtime
from tests.integration.page_helpers import (
    SECURITY,
    followed,
    mail_to,
    post_form,
    sign_in_to_security_page,
    totp_secret,
)
from tests.integration.recovery_helpers import PASSWORD, new_user

ANA = "ana@example.com"
SPANISH = {"Accept-Language": "es"}


async def test_turning_it_on_and_off_from_the_spanish_page_mails_in_spanish(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    ana = await new_user(runtime, ANA)
    assert ana.locale is None
    page = await sign_in_to_security_page(client, ANA, PASSWORD, **SPANISH)
    set_up = await followed(
        client, await post_form(client, page, f"{SECURITY}/totp", current_password=PASSWORD)
    )
    generator = pyotp.TOTP(totp_secret(set_up))
    codes = await followed(
        client, await post_form(client, set_up, f"{SECURITY}/totp/confirm", code=generator.now())
    )
    assert 'lang="es"' in codes.text

    await followed(
        client,
        await post_form(
            client, page, f"{SECURITY}/totp/disable", password=PASSWORD, code=_a(codes)
        ),
    )

    on, off = await mail_to(runtime, ANA)
    assert on.subject.startswith("Se ha activado la verificación en dos pasos")
    assert off.subject.startswith("Se ha desactivado la verificación en dos pasos")


def _a(codes_page: httpx.Response) -> str:
    """One of the recovery codes the page shows."""
    start = codes_page.text.index("<li data-recovery-code>") + len("<li data-recovery-code>")
    return codes_page.text[start : codes_page.text.index("</li>", start)]
