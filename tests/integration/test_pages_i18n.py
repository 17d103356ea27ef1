"""Page language: ui_locales first, then Accept-Language, then English."""

from __future__ import annotations

import re
import string
from pathlib import Path

import httpx
import pytest

import identity
from identity.i18n import SUPPORTED_LOCALES, catalogue, negotiate
from identity.mail.models import OutgoingEmail
from identity.oauth.errors import InvalidClientError, InvalidRequestError
from identity.oauth.interaction import FlowStore
from identity.oauth.scopes import SCOPES_SUPPORTED
from identity.runtime import Runtime
from identity.web.pages_memberships import DONE
from tests.browser import (
    EMAIL,
    add_oauth_client,
    add_user,
    authorize_params,
    form_fields,
    open_login,
    submit_login,
)
from tests.integration.account_helpers import invite_and_read_link, make_account
from tests.integration.page_helpers import ask_email_change, mail_to
from tests.integration.recovery_helpers import PASSWORD as RECOVERY_PASSWORD
from tests.integration.recovery_helpers import enrolled_user


@pytest.fixture
async def setup(runtime: Runtime) -> None:
    await add_user(runtime)
    await add_oauth_client(runtime)


@pytest.mark.usefixtures("setup")
async def test_ui_locales_selects_spanish(client: httpx.AsyncClient) -> None:
    page = await open_login(client, authorize_params(ui_locales="es-ES en"))
    assert '<html lang="es">' in page.text
    assert "Iniciar sesión" in page.text
    assert "Contraseña" in page.text


@pytest.mark.usefixtures("setup")
async def test_accept_language_selects_spanish(client: httpx.AsyncClient) -> None:
    client.headers["Accept-Language"] = "es-MX,es;q=0.9,en;q=0.5"
    page = await open_login(client, authorize_params())
    assert '<html lang="es">' in page.text
    failed = await submit_login(client, page, password="Wrong!Password1")
    assert "El correo electrónico o la contraseña no son correctos." in failed.text


@pytest.mark.usefixtures("setup")
async def test_ui_locales_wins_over_accept_language(client: httpx.AsyncClient) -> None:
    client.headers["Accept-Language"] = "es"
    page = await open_login(client, authorize_params(ui_locales="en"))
    assert '<html lang="en">' in page.text
    assert "Sign in" in page.text


@pytest.mark.usefixtures("setup")
async def test_english_is_the_default(client: httpx.AsyncClient) -> None:
    client.headers["Accept-Language"] = "de-DE,fr;q=0.8"
    page = await open_login(client, authorize_params(ui_locales="ja"))
    assert '<html lang="en">' in page.text


@pytest.mark.usefixtures("setup")
async def test_error_page_is_translated(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/authorize", params={"client_id": "nope"}, headers={"Accept-Language": "es"}
    )
    assert response.status_code == 400
    assert "no está registrada" in response.text


@pytest.mark.usefixtures("setup")
async def test_consent_page_is_translated(client: httpx.AsyncClient) -> None:
    page = await open_login(client, authorize_params(ui_locales="es"))
    consent = await submit_login(client, page)
    text = (await client.get(consent.headers["location"])).text
    assert "¿Permitir el acceso?" in text
    assert "Ver tu nombre" in text


@pytest.mark.parametrize(
    ("ui_locales", "accept_language", "expected"),
    [
        ("es", None, "es"),
        ("fr es", "en", "es"),
        (None, "fr;q=1, es;q=0.8, en;q=0.5", "es"),
        (None, "en;q=0.2, es;q=0.9", "es"),
        (None, "es;q=0, en", "en"),
        (None, "garbage;;q=x", "en"),
        # "*" stands for every language the header does not name (RFC 9110 §12.5.4).
        (None, "en;q=0, *", "es"),
        (None, "es;q=0.5, *;q=0.9", "en"),
        (None, "de, *;q=0.5, es;q=0.4", "en"),
        (None, "*", "en"),
        (None, None, "en"),
        # A qvalue outside RFC 9110 §12.4.2's grammar drops its language range, so it
        # can never outrank a well-formed one.
        (None, "es;q=2, en", "en"),
        (None, "es;q=1.5, en", "en"),
        (None, "es;q=-1, en;q=0.1", "en"),
        (None, "es;q=0.1234, en;q=0.1", "en"),
        (None, "es;q=abc, en;q=0.1", "en"),
        (None, "es;q=inf, en", "en"),
        (None, "es;q=1e0, en;q=0.5", "en"),
        (None, "es;q=.9, en;q=0.5", "en"),
        (None, "es;q=1.000, en;q=0.5", "es"),
        (None, "en;q=abc, es;q=0.001", "es"),
    ],
)
def test_negotiation_order(
    ui_locales: str | None, accept_language: str | None, expected: str
) -> None:
    assert negotiate(ui_locales, accept_language) == expected


def test_every_language_has_every_page_text() -> None:
    english = set(catalogue("en"))
    for locale in SUPPORTED_LOCALES:
        assert set(catalogue(locale)) == english, locale


@pytest.mark.usefixtures("setup")
@pytest.mark.parametrize(
    "refused",
    [
        [("post_logout_redirect_uri", "https://elsewhere.example/")],
        [("id_token_hint", "not-a-token")],
        [("state", "a"), ("state", "b")],
    ],
)
async def test_refused_logout_speaks_the_requested_language(
    client: httpx.AsyncClient, refused: list[tuple[str, str]]
) -> None:
    response = await client.get("/logout", params=[*refused, ("ui_locales", "es")])
    assert response.status_code == 400
    assert '<html lang="es">' in response.text
    assert "Esta solicitud de cierre de sesión no es válida." in response.text


def _emailed_link(message: OutgoingEmail) -> str:
    """The path and query of the one link of an email's text part."""
    match = re.search(r"http://testserver\.local(/\S+)", message.text_body)
    assert match, message.text_body
    return match.group(1)


async def test_a_reset_link_opens_its_page_in_the_language_of_its_email(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await add_user(runtime)
    client.headers["Accept-Language"] = "en"
    forgot = await client.get("/password/forgot", params={"ui_locales": "es"})
    await client.post("/password/forgot", data=form_fields(forgot.text) | {"email": EMAIL})
    [email] = await mail_to(runtime, EMAIL)
    assert email.subject == "Cambia tu contraseña de Identity"

    reset = await client.get(_emailed_link(email))

    assert '<html lang="es">' in reset.text
    assert "Elige una contraseña nueva" in reset.text


async def _ask_in_spanish_to_move_to(runtime: Runtime, new_email: str) -> None:
    """A user asks, on a Spanish page, to sign in with ``new_email`` from now on."""
    user = await add_user(runtime)
    await ask_email_change(runtime, user, new_email, "es")


async def test_a_confirmation_link_opens_its_page_in_the_language_of_its_email(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await _ask_in_spanish_to_move_to(runtime, "ana.nueva@example.com")
    [email] = await mail_to(runtime, "ana.nueva@example.com")

    page = await client.get(_emailed_link(email), headers={"Accept-Language": "en"})

    assert '<html lang="es">' in page.text
    assert "Confirma tu nuevo correo electrónico" in page.text


async def test_the_old_address_is_told_of_a_change_in_the_language_it_was_asked_in(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await _ask_in_spanish_to_move_to(runtime, "ana.nueva@example.com")
    [confirmation] = await mail_to(runtime, "ana.nueva@example.com")
    page = await client.get(_emailed_link(confirmation))
    confirmed = await client.post("/confirm-email", data=form_fields(page.text))
    assert "A partir de ahora inicias sesión con ana.nueva@example.com." in confirmed.text

    [notice] = await mail_to(runtime, EMAIL)

    assert notice.subject == (
        "Se ha cambiado el correo de inicio de sesión de tu cuenta de Identity"
    )


async def test_an_invitation_link_opens_its_page_in_the_language_of_its_email(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await add_user(runtime, "owner@example.com")
    account = await make_account(runtime, owner, "Acme")
    await invite_and_read_link(runtime, account, "nina@example.com", locale="es")
    [email] = await mail_to(runtime, "nina@example.com")

    page = await client.get(_emailed_link(email), headers={"Accept-Language": "en"})

    assert '<html lang="es">' in page.text
    assert "Te han invitado a unirte a la cuenta «Acme»" in page.text


async def _expire(runtime: Runtime, page: httpx.Response) -> None:
    await FlowStore(runtime.store).delete(form_fields(page.text)["flow"])


@pytest.mark.usefixtures("setup")
async def test_a_sign_in_that_expired_on_the_login_page_says_so_in_its_language(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    client.headers["Accept-Language"] = "en"
    page = await open_login(client, authorize_params(ui_locales="es"))
    await _expire(runtime, page)

    expired = await submit_login(client, page)

    assert expired.status_code == 400
    assert '<html lang="es">' in expired.text
    assert "Esta página de inicio de sesión ha caducado." in expired.text


@pytest.mark.usefixtures("setup")
async def test_a_sign_in_that_expired_on_the_consent_page_says_so_in_its_language(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    client.headers["Accept-Language"] = "en"
    consent = await submit_login(
        client, await open_login(client, authorize_params(ui_locales="es"))
    )
    page = await client.get(consent.headers["location"])
    await _expire(runtime, page)

    expired = await client.post("/consent", data=form_fields(page.text) | {"decision": "allow"})

    assert '<html lang="es">' in expired.text
    assert "Esta página de inicio de sesión ha caducado." in expired.text


async def test_a_sign_in_that_expired_on_the_code_page_says_so_in_its_language(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await add_oauth_client(runtime)
    _, generator, _ = await enrolled_user(runtime, EMAIL)
    client.headers["Accept-Language"] = "en"
    login = await open_login(client, authorize_params(ui_locales="es"))
    to_code = await client.post(
        "/login", data=form_fields(login.text) | {"email": EMAIL, "password": RECOVERY_PASSWORD}
    )
    page = await client.get(to_code.headers["location"])
    await _expire(runtime, page)

    expired = await client.post(
        "/login/second-factor", data=form_fields(page.text) | {"code": generator.now()}
    )

    assert '<html lang="es">' in expired.text
    assert "Esta página de inicio de sesión ha caducado." in expired.text


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def test_every_text_has_the_same_placeholders_in_every_language() -> None:
    english = catalogue("en")
    for locale in SUPPORTED_LOCALES:
        for key, text in catalogue(locale).items():
            assert _placeholders(text) == _placeholders(english[key]), (locale, key)


# A text id as code and templates write it: "<section>.<name>", not a file name.
_TEXT_ID = re.compile(r"""["']([a-z_]+\.[a-z_.:]+)["']""")
_NOT_IDS = (".html", ".txt", ".toml", ".id")


def test_every_text_id_the_code_names_exists() -> None:
    """Literal ids anywhere in the pages, emails and templates, and the ids they build."""
    texts = catalogue("en")
    sections = {key.split(".")[0] for key in texts}
    root = Path(identity.__file__).parent
    sources = [*root.glob("web/**/*.py"), *root.glob("mail/*.py"), *root.glob("templates/**/*")]
    named = {
        match.rstrip(".")
        for path in sources
        if path.is_file()
        for match in _TEXT_ID.findall(path.read_text())
        if match.split(".")[0] in sections and not match.endswith(_NOT_IDS)
    }
    # The invitation page names its closed-link text after the domain's reason.
    reasons = re.findall(r'reason="(\w+)"', (root / "permissions" / "invitations.py").read_text())
    built = {
        *(f"users.done.{done}" for done in DONE),
        *(f"language.{code}" for code in SUPPORTED_LOCALES),
        *(f"scope.{scope}" for scope in SCOPES_SUPPORTED),
        *(f"error.oauth.{error.error}" for error in (InvalidClientError, InvalidRequestError)),
        *(f"invite.{reason}" for reason in reasons),
    }
    # A name that is only a prefix ("email.reset", "users.done.") must prefix some id.
    missing = {
        name
        for name in named | built
        if name not in texts and not any(key.startswith(f"{name}.") for key in texts)
    }
    assert reasons and not missing
