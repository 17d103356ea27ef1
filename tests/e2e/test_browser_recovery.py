"""In Chromium against a real ``identity serve`` and a real SMTP server: a forgotten password
reset through the emailed link with the generate button, in English and Spanish; and
two-step verification turned on from the security page, then used to sign in."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import urlencode

import httpx
import pyotp
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from playwright.sync_api import Browser, Page, Route

from tests.browser import PASSWORD, authorize_params, chromium, pkce_pair, query
from tests.e2e.test_browser_sign_in import redirect_listener
from tests.processes import Server, identity_server, run_identity
from tests.smtp_server import Inbox, smtp_server

EMAIL = "rosa@example.com"


@pytest.fixture
def smtp() -> Iterator[tuple[int, Inbox]]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def server_env(env: dict[str, str], smtp: tuple[int, Inbox]) -> dict[str, str]:
    # The issuer is the server's own address, which identity_server sets when env has none.
    served = {name: value for name, value in env.items() if name != "IDENTITY_ISSUER"}
    return served | {"IDENTITY_SMTP_URL": f"smtp://127.0.0.1:{smtp[0]}"}


@pytest.fixture
def server(server_env: dict[str, str]) -> Iterator[Server]:
    with identity_server(server_env) as running:
        created = run_identity(
            "users", "create", "--email", EMAIL, "--name", "Rosa", "--password-stdin",
            env=server_env, stdin=PASSWORD,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        yield running


@pytest.fixture
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def _new_page(browser: Browser, locale: str) -> Page:
    context = browser.new_context(locale=locale, permissions=["clipboard-read", "clipboard-write"])
    return context.new_page()


def _wait_for_mail(inbox: Inbox, count: int, timeout: float = 20) -> list[EmailMessage]:
    deadline = time.monotonic() + timeout
    while len(inbox.messages) < count:
        assert time.monotonic() < deadline, f"{len(inbox.messages)} of {count} emails arrived"
        time.sleep(0.1)
    return inbox.messages[:count]


def _plain(message: EmailMessage) -> str:
    return message.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def _sign_in_on_security_page(page: Page, base_url: str, password: str) -> None:
    page.goto(f"{base_url}/account/security")
    page.wait_for_url(f"{base_url}/login?flow=*")
    page.fill("input[name=email]", EMAIL)
    page.fill("input[name=password]", password)
    page.click("form[action^='/login?'] button[type=submit]")
    page.wait_for_url(f"{base_url}/account/security?ui_locales=*")
    assert page.text_content("[data-email]") == EMAIL


TEXTS = {
    "en-GB": {
        "forgot": "Forgot your password?",
        "sent": "Check your inbox and your spam folder too.",
        "subject": "Change your Identity password",
        "strong": "Strong enough.",
        "personal": "Do not use your email address or your name.",
        "done": "Sign in again with the new password.",
        "changed": "Your Identity password was changed",
    },
    "es-ES": {
        "forgot": "¿Has olvidado tu contraseña?",
        "sent": "Revisa tu bandeja de entrada y también la carpeta de correo no deseado.",
        "subject": "Cambia tu contraseña de Identity",
        "strong": "Suficientemente segura.",
        "personal": "No uses tu dirección de correo ni tu nombre.",
        "done": "Vuelve a iniciar sesión con la contraseña nueva.",
        "changed": "Se ha cambiado tu contraseña de Identity",
    },
}


@pytest.mark.e2e
@pytest.mark.parametrize("locale", ["en-GB", "es-ES"])
def test_forgot_password_email_link_generated_password_then_sign_in(
    server: Server, smtp: tuple[int, Inbox], browser: Browser, locale: str
) -> None:
    texts, base_url = TEXTS[locale], server.base_url
    page = _new_page(browser, locale)
    page.goto(f"{base_url}/account/security")
    page.wait_for_url(f"{base_url}/login?flow=*")
    page.click(f"text={texts['forgot']}")
    page.wait_for_url(f"{base_url}/password/forgot?*")
    page.fill("input[name=email]", EMAIL)
    page.click("button[type=submit]")
    assert texts["sent"] in page.text_content("[role=status]")  # type: ignore[operator]

    (message,) = _wait_for_mail(smtp[1], 1)
    assert message["Subject"] == texts["subject"]
    match = re.search(rf"{re.escape(base_url)}/reset-password\?token=\S+", _plain(message))
    assert match, _plain(message)
    page.goto(match.group(0))
    # The live check knows whose password this is, as the form's own check does.
    page.fill("input[name=password]", "Rosa#Tulip-Vane7")
    page.wait_for_selector(f"text={texts['personal']}")
    page_loads: list[str] = []
    page.on("framenavigated", lambda frame: page_loads.append(frame.url))

    # The generate button works in place (JavaScript): no navigation, both fields filled,
    # the copy button shown, and the strength line checked with the API.
    page.click("[data-password-generate]")
    page.wait_for_selector("[data-password-suggestion]", state="visible")
    generated = page.input_value("input[name=password]")
    assert page.input_value("input[name=password_confirm]") == generated
    assert page.input_value("#password_suggestion") == generated
    page.wait_for_selector(f"text={texts['strong']}")
    page.click("[data-password-copy]")
    assert page.evaluate("navigator.clipboard.readText()") == generated
    assert page_loads == []
    page.click("form button[type=submit]:not([data-password-generate])")
    assert texts["done"] in page.text_content("[role=status]")  # type: ignore[operator]

    (_, changed) = _wait_for_mail(smtp[1], 2)
    assert changed["Subject"] == texts["changed"]
    _sign_in_on_security_page(page, base_url, generated)


def _turn_on_two_step(page: Page) -> tuple[pyotp.TOTP, list[str]]:
    """On the security page: turn two-step verification on; its generator and recovery
    codes."""
    page.fill("#enable_password", PASSWORD)
    page.click("text=Turn on two-step verification")
    page.wait_for_selector(".qr svg")
    generator = pyotp.TOTP(page.text_content("[data-totp-secret]") or "")
    page.fill("input[name=code]", generator.now())
    page.click("button[type=submit]")
    page.wait_for_selector("[data-recovery-code]")
    codes = page.locator("[data-recovery-code]").all_text_contents()
    assert len(codes) == 10
    return generator, codes


def _new_recovery_codes(page: Page) -> list[str]:
    """From the page of the codes just shown: back to the security page, new codes."""
    page.click("text=I have saved my codes")
    page.fill("#codes_password", PASSWORD)
    page.click("text=Generate new recovery codes")
    page.wait_for_selector("text=Your old recovery codes no longer work")
    codes = page.locator("[data-recovery-code]").all_text_contents()
    assert len(codes) == 10
    return codes


@pytest.mark.e2e
def test_reloading_a_page_a_form_led_to_posts_nothing_again(
    server: Server, smtp: tuple[int, Inbox], browser: Browser
) -> None:
    page = _new_page(browser, "en-GB")
    _sign_in_on_security_page(page, server.base_url, PASSWORD)
    _turn_on_two_step(page)
    _new_recovery_codes(page)

    page.reload()

    # The codes were shown once; the reload neither replaced them again nor shows them.
    page.wait_for_selector("[data-email]")
    assert page.locator("[data-recovery-code]").count() == 0
    assert "Recovery codes left: 10." in (page.text_content("#totp") or "")
    page.fill("#name", "Rosa María")
    page.click("text=Save the name")
    page.wait_for_selector("text=Your name was saved.")
    page.reload()
    page.wait_for_selector("[data-email]")
    assert page.locator("[role=status]").count() == 0
    assert page.input_value("#name") == "Rosa María"
    _wait_for_mail(smtp[1], 2)
    time.sleep(1)  # a third notice, had the reload posted again, would be queued by now
    subjects = sorted(m["Subject"] for m in smtp[1].messages)
    assert len(subjects) == 2, subjects
    assert subjects[0].startswith("New recovery codes"), subjects
    assert subjects[1].startswith("Two-step verification was turned on"), subjects


def _id_token_amr(
    base_url: str, client: dict[str, str], code: str, verifier: str, redirect_uri: str
) -> list[str]:
    discovery = httpx.get(f"{base_url}/.well-known/openid-configuration").json()
    tokens = httpx.post(
        discovery["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        },
        auth=(client["client_id"], client["client_secret"]),
    )
    assert tokens.status_code == 200, tokens.text
    jwks = KeySet.import_key_set(httpx.get(discovery["jwks_uri"]).json())
    return jwt.decode(tokens.json()["id_token"], jwks).claims["amr"]


@dataclass(frozen=True)
class _CodePage:
    """A fresh browser at the code step of an app's sign-in: the page, the app, its PKCE
    verifier and redirect URI."""

    page: Page
    client: dict[str, str]
    verifier: str
    redirect_uri: str


def _at_the_code_step(
    browser: Browser, base_url: str, server_env: dict[str, str], redirect_uri: str
) -> _CodePage:
    created = run_identity(
        "clients", "create", "--name", "Portal", "--first-party",
        "--redirect-uri", redirect_uri, "--scope", "openid email",
        env=server_env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    client = json.loads(created.stdout)
    verifier, challenge = pkce_pair()
    fresh = _new_page(browser, "en-GB")
    params = authorize_params(
        client_id=client["client_id"],
        redirect_uri=redirect_uri,
        scope="openid email",
        state="st",
        nonce=None,
        code_challenge=challenge,
    )
    fresh.goto(f"{base_url}/authorize?{urlencode(params)}")
    fresh.fill("input[name=email]", EMAIL)
    fresh.fill("input[name=password]", PASSWORD)
    fresh.click("form[action^='/login?'] button[type=submit]")
    fresh.wait_for_url(f"{base_url}/login/second-factor?flow=*")
    return _CodePage(fresh, client, verifier, redirect_uri)


def _amr_of_callback(base_url: str, step: _CodePage, received: list[str]) -> list[str]:
    """The ``amr`` of the ID token for the code the app was sent back with last."""
    callback = [path for path in received if path.startswith("/callback?")][-1]
    code = query(callback)["code"]
    return _id_token_amr(base_url, step.client, code, step.verifier, step.redirect_uri)


@pytest.mark.e2e
def test_turn_on_two_step_verification_then_sign_in_with_password_and_code(
    server: Server, server_env: dict[str, str], browser: Browser
) -> None:
    base_url = server.base_url
    page = _new_page(browser, "en-GB")
    _sign_in_on_security_page(page, base_url, PASSWORD)
    generator, codes = _turn_on_two_step(page)
    new_codes = _new_recovery_codes(page)
    assert not set(new_codes) & set(codes)

    with redirect_listener() as (redirect_uri, received):
        step = _at_the_code_step(browser, base_url, server_env, redirect_uri)
        # The enrolment spent the current step's code; the next step's is within the drift
        # window and unspent.
        step.page.fill("input[name=code]", generator.at(time.time() + 30))
        step.page.click("button[type=submit]")
        step.page.wait_for_url(f"{redirect_uri}?*")
    assert _amr_of_callback(base_url, step, received) == ["pwd", "otp"]


@pytest.mark.e2e
def test_the_code_form_posted_twice_signs_in(
    server: Server, server_env: dict[str, str], browser: Browser
) -> None:
    """A double click as the browser lives it: the first post reaches the server, whose
    answer (the session cookie, the redirect to the app) the browser drops for the second
    click's. Chromium merges a ``dblclick`` into one post, and two clicks race the first
    answer: the first answer is taken out of the browser's hands instead, so that the
    second click always posts after the first post has signed in."""
    base_url = server.base_url
    page = _new_page(browser, "en-GB")
    _sign_in_on_security_page(page, base_url, PASSWORD)
    _, codes = _turn_on_two_step(page)

    with redirect_listener() as (redirect_uri, received):
        step = _at_the_code_step(browser, base_url, server_env, redirect_uri)
        first_answers: list[int] = []

        def drop_the_first_answer(route: Route) -> None:
            if first_answers:
                route.continue_()
                return
            first_answers.append(route.fetch(max_redirects=0).status)
            route.fulfill(status=204)  # no content: the browser stays on the code page

        step.page.route("**/login/second-factor?*", drop_the_first_answer)
        step.page.fill("input[name=code]", codes[0])
        context = step.page.context
        cookies_before = context.cookies()
        with step.page.expect_response(lambda answer: answer.request.method == "POST"):
            step.page.click("button[type=submit]")
        assert first_answers == [303]
        # Playwright's fetch kept the first answer's cookie for the browser: dropped too.
        context.clear_cookies()
        context.add_cookies(cookies_before)  # type: ignore[arg-type]
        step.page.click("button[type=submit]")
        step.page.wait_for_url(f"{redirect_uri}?*")
        assert step.page.text_content("body") == "signed in"
    assert _amr_of_callback(base_url, step, received) == ["pwd", "otp"]


@pytest.mark.e2e
def test_the_reset_page_works_with_javascript_turned_off(
    server: Server, smtp: tuple[int, Inbox], browser: Browser
) -> None:
    page = browser.new_context(java_script_enabled=False).new_page()
    page.goto(f"{server.base_url}/password/forgot")
    page.fill("input[name=email]", EMAIL)
    page.click("button[type=submit]")
    (message,) = _wait_for_mail(smtp[1], 1)
    match = re.search(r"http://\S+/reset-password\?token=\S+", _plain(message))
    assert match, _plain(message)
    page.goto(match.group(0))
    assert page.is_hidden("[data-password-copy]")
    # "Generate" posts the form and the page comes back with a suggestion in both fields.
    page.click("[data-password-generate]")
    page.wait_for_selector("[data-password-suggestion]", state="visible")
    generated = page.input_value("#password_suggestion")
    assert generated and page.input_value("input[name=password]") == generated
    assert page.input_value("input[name=password_confirm]") == generated
    page.click("form button[type=submit]:not([data-password-generate])")
    page.wait_for_selector("text=Password changed")
    _sign_in_on_security_page(page, server.base_url, generated)
