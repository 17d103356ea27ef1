"""Every hosted page, in English and Spanish, checked in Chromium with axe-core against WCAG 2.2
AA, plus what axe cannot judge: the page's language, a title naming the page, a visible label
and an explicit autocomplete on every field, per-field errors tied to their field, a text
alternative for the QR code tied to the key, and a visible focus ring on every stop of the
keyboard's tab order.

axe-core comes from npm (tests/a11y/package-lock.json). The pages forbid inline script, so its
source runs through Playwright's evaluate, which the page's Content-Security-Policy does not
govern: the test checks the pages with their real headers.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pyotp
import pytest
from playwright.sync_api import Browser, Page

from identity.settings import Settings
from tests.browser import PASSWORD, authorize_params, chromium
from tests.e2e.flows import cli
from tests.e2e.test_browser_sign_in import redirect_listener
from tests.e2e.test_browser_users_page import _create_account, mailed_link
from tests.node_packages import install_locked
from tests.processes import identity_server
from tests.wrong_codes import wrong_code

A11Y = Path(__file__).parents[1] / "a11y"
NEEDS_NPM = "the accessibility test installs axe-core with npm (.ci/run installs Node.js and npm)"
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
OWNER = "owner@example.com"
WEAK = "password"
TAB_STOPS = 40

# What axe does not judge, for every page. Returns one sentence per problem.
PAGE_CHECKS = """(lang) => {
  const problems = [];
  const visible = (el) => el.getClientRects().length > 0;
  if (document.documentElement.lang !== lang)
    problems.push(`<html lang="${document.documentElement.lang}">, not ${lang}`);
  const h1 = document.querySelector("h1");
  if (!h1 || !document.title.startsWith(h1.textContent.trim()))
    problems.push(`title "${document.title}" does not start with the h1`);
  for (const field of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
    if (!visible(field)) continue;
    const label = [...field.labels].find((l) => visible(l) && l.innerText.trim());
    if (!label) problems.push(`#${field.id || field.name} has no visible label`);
    const typed = field.tagName === "INPUT" && !["checkbox", "radio"].includes(field.type);
    if (typed && !field.getAttribute("autocomplete"))
      problems.push(`#${field.id || field.name} says nothing about autocomplete`);
    if (field.type === "password"
        && !["current-password", "new-password"].includes(field.autocomplete))
      problems.push(`#${field.id} is a password field with autocomplete="${field.autocomplete}"`);
  }
  for (const field of document.querySelectorAll("[aria-invalid=true]")) {
    const ids = (field.getAttribute("aria-describedby") || "").split(/\\s+/).filter(Boolean);
    const described = ids.map((id) => document.getElementById(id)).filter(Boolean);
    const announced = described.some((el) => el.closest("[role=alert], [aria-live]"));
    if (!announced) problems.push(`#${field.id} is invalid but no announced error describes it`);
  }
  return problems;
}"""

# The field a page's error is about: it must be marked invalid and described by the error.
FIELD_ERROR = """(selector) => {
  const field = document.querySelector(selector);
  return field.getAttribute("aria-invalid") === "true"
    && (field.getAttribute("aria-describedby") || "").trim() !== "";
}"""

# The QR code as assistive technology sees it: an image with a name, described by the key.
QR_CHECK = """() => {
  const image = document.querySelector(".qr [role=img], .qr[role=img]");
  const secret = document.querySelector("[data-totp-secret]");
  if (!image) return "the QR code is not exposed as an image";
  const named = image.getAttribute("aria-label") || image.getAttribute("aria-labelledby");
  if (!named) return "the QR code has no accessible name";
  const described = (image.getAttribute("aria-describedby") || "").split(/\\s+/)
    .map((id) => document.getElementById(id));
  if (!described.some((el) => el && el.contains(secret)))
    return "the QR code is not described by the key typed in its place";
  return null;
}"""

# The keyboard's focus ring on the focused element, or null when it is visible enough.
FOCUS_RING = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const style = getComputedStyle(el);
  const width = parseFloat(style.outlineWidth);
  if (style.outlineStyle !== "none" && style.outlineStyle !== "auto" && width >= 2) return null;
  return `${el.tagName.toLowerCase()}#${el.id || el.name || el.textContent.trim()}`
    + ` focus ring: ${style.outlineStyle} ${style.outlineWidth}`;
}"""


class Audit:
    """Runs the checks on each page it is shown and keeps every problem, by page."""

    def __init__(self, axe_source: str, lang: str) -> None:
        self.axe_source = axe_source
        self.lang = lang
        self.problems: dict[str, list[str]] = {}
        self.titles: dict[str, str] = {}

    def __call__(
        self, page: Page, name: str, *, invalid_field: str | None = None, qr: bool = False
    ) -> None:
        page.wait_for_load_state()
        found = [*self._axe(page), *page.evaluate(PAGE_CHECKS, self.lang), *self._focus(page)]
        if invalid_field and not page.evaluate(FIELD_ERROR, invalid_field):
            found.append(f"{invalid_field} is not marked invalid and described by its error")
        if qr and (qr_problem := page.evaluate(QR_CHECK)):
            found.append(qr_problem)
        # "page, state" names one page in another state, under the same title.
        page_name, title = name.split(", ")[0], page.title()
        if self.titles.get(title, page_name) != page_name:
            found.append(f"same title as the {self.titles[title]} page: {title}")
        self.titles.setdefault(title, page_name)
        if found:
            self.problems[f"{self.lang} {name}"] = found

    def _axe(self, page: Page) -> list[str]:
        if not page.evaluate("typeof axe !== 'undefined'"):
            page.evaluate(self.axe_source)
        result = page.evaluate(
            "(tags) => axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG_AA
        )
        # "Incomplete" is axe asking a person to look (a contrast it could not compute, say):
        # none is expected, so one fails the test until someone has.
        return [
            f"axe {kind} {rule['id']}: {rule['help']} ({node['target']})"
            for kind in ("violations", "incomplete")
            for rule in result[kind]
            for node in rule["nodes"]
        ]

    def _focus(self, page: Page) -> list[str]:
        page.evaluate("document.activeElement && document.activeElement.blur()")
        problems: list[str] = []
        for _ in range(TAB_STOPS):
            page.keyboard.press("Tab")
            problem = page.evaluate(FOCUS_RING)
            if problem and problem not in problems:
                problems.append(problem)
        return problems


@pytest.fixture(scope="module")
def axe_source() -> str:
    modules = install_locked(A11Y, NEEDS_NPM)
    return (modules / "axe-core" / "axe.min.js").read_text()


@dataclass(frozen=True)
class Site:
    """A running server with the owner of two accounts and a client that asks for consent."""

    base_url: str
    outbox: Path
    client_id: str
    redirect_uri: str
    account_id: str
    locale: str


def _authorize_url(site: Site) -> str:
    params = authorize_params(
        client_id=site.client_id,
        redirect_uri=site.redirect_uri,
        scope="openid email",
        state=secrets.token_urlsafe(8),
        nonce=None,
    )
    return f"{site.base_url}/authorize?{urlencode(params)}"


def _submit(page: Page, button: str) -> None:
    """Click a form's button and wait for the page it posts to (not the one still shown)."""
    with page.expect_navigation():
        page.click(button)


def _sign_in(page: Page, password: str = PASSWORD) -> None:
    page.fill("input[name=email]", OWNER)
    page.fill("input[name=password]", password)
    _submit(page, "form[action^='/login?'] button[type=submit]")


def _walk(browser: Browser, site: Site, audit: Audit) -> None:
    """Every page a customer can meet, in one language, in an order that reaches each."""
    base_url, locale, outbox = site.base_url, site.locale, site.outbox
    page = browser.new_context(locale=locale).new_page()
    page.goto(f"{base_url}/authorize?client_id=nobody&response_type=code")
    audit(page, "error")
    page.goto(f"{base_url}/logni")
    audit(page, "error, no page at this address")

    authorize_url = _authorize_url(site)
    page.goto(authorize_url)
    audit(page, "login")
    _sign_in(page, "not the password")
    audit(page, "login, refused")
    _sign_in(page)
    page.wait_for_url(f"{base_url}/login/account?flow=*")
    audit(page, "account picker")
    page.click("ul.choices button >> nth=0")
    page.wait_for_url(f"{base_url}/consent?flow=*")
    audit(page, "consent")
    page.click("button[value=allow]")
    page.wait_for_url(f"{site.redirect_uri}?*")

    security = f"{base_url}/account/security"
    page.goto(security)
    audit(page, "security")
    _submit(page, "#accounts button[type=submit] >> nth=0")
    audit(page, "leave question")
    page.goto(security)
    page.fill("#current_password", PASSWORD)
    page.fill("input#password", WEAK)
    page.fill("#password_confirm", WEAK)
    _submit(page, "form[action*='/password?'] button[type=submit]:not([data-password-generate])")
    audit(page, "security, new password refused", invalid_field="input#password")
    page.fill("#new_email", f"new-{locale.lower()}@example.com")
    page.fill("#email_password", PASSWORD)
    _submit(page, "form[action*='/email?'] button[type=submit]")
    page.wait_for_selector("[role=status]")
    audit(page, "security, email change sent")
    page.goto(mailed_link(outbox, f"new-{locale.lower()}@example.com", "/confirm-email"))
    audit(page, "confirm email")

    page.goto(security)
    page.fill("#enable_password", PASSWORD)
    _submit(page, "form[action*='/totp?'] button[type=submit]")
    page.wait_for_selector(".qr svg")
    audit(page, "two-step set-up", qr=True)
    generator = pyotp.TOTP(page.text_content("[data-totp-secret]") or "")
    page.fill("#code", wrong_code(generator.secret))
    _submit(page, "form button[type=submit]")
    page.wait_for_selector(".qr svg")
    audit(page, "two-step set-up, code refused", invalid_field="#code", qr=True)
    page.fill("#code", generator.now())
    _submit(page, "form button[type=submit]")
    page.wait_for_selector("[data-recovery-code]")
    audit(page, "recovery codes")

    page.goto(f"{base_url}/accounts/{site.account_id}/users")
    audit(page, "users")
    sub_user = f"clerk-{locale.lower()}@example.com"
    page.fill("#invite-email", sub_user)
    page.check("#invite-p-invoices")
    _submit(page, "form#invite button[type=submit]")
    page.wait_for_selector("[role=status]")
    audit(page, "users, invitation sent")

    invited = browser.new_context(locale=locale).new_page()
    invited.goto(mailed_link(outbox, sub_user, "/invitations/accept"))
    audit(invited, "invitation")
    invited.fill("#name", "Bill Clerk")
    invited.fill("#password", WEAK)
    invited.fill("#password_confirm", WEAK)
    _submit(invited, "button[name=accept]")
    audit(invited, "invitation, password refused", invalid_field="input#password")
    invited.fill("#password", PASSWORD)
    invited.fill("#password_confirm", PASSWORD)
    _submit(invited, "button[name=accept]")
    invited.wait_for_selector("[role=status]")
    audit(invited, "invitation accepted")
    # The new member's row: its grant form is hidden (and unchecked by axe) until opened.
    page.goto(f"{base_url}/accounts/{site.account_id}/users")
    page.click("tbody details summary")
    audit(page, "users, member's grants open")
    _submit(page, f"tr:has-text('{sub_user}') form.remove button")
    audit(page, "remove a member")
    _submit(page, "a.button")

    fresh = browser.new_context(locale=locale).new_page()
    fresh.goto(f"{base_url}/password/forgot")
    audit(fresh, "forgot password")
    fresh.fill("#email", OWNER)
    _submit(fresh, "button[type=submit]")
    fresh.wait_for_selector("[role=status]")
    audit(fresh, "reset link sent")
    reset_link = mailed_link(outbox, OWNER, "/reset-password")
    fresh.goto(reset_link)
    audit(fresh, "reset password")
    fresh.fill("#password", WEAK)
    fresh.fill("#password_confirm", WEAK)
    _submit(fresh, "form button[type=submit]:not([data-password-generate])")
    audit(fresh, "reset password, refused", invalid_field="input#password")
    fresh.goto(f"{base_url}/reset-password?token=unknown")
    audit(fresh, "reset link unknown")

    fresh.goto(authorize_url)
    _sign_in(fresh)
    fresh.wait_for_url(f"{base_url}/login/second-factor?flow=*")
    audit(fresh, "second factor")
    fresh.fill("#code", "0000000")
    _submit(fresh, "button[type=submit]")
    audit(fresh, "second factor, refused", invalid_field="#code")

    page.goto(f"{base_url}/logout")
    audit(page, "sign out")
    _submit(page, "button[type=submit]")
    audit(page, "signed out")


@pytest.mark.e2e
@pytest.mark.parametrize(("locale", "lang"), [("en-GB", "en"), ("es-ES", "es")])
def test_every_hosted_page_meets_wcag_2_2_aa(
    env: dict[str, str], axe_source: str, locale: str, lang: str
) -> None:
    env = {name: value for name, value in env.items() if name != "IDENTITY_ISSUER"}
    with redirect_listener() as (redirect_uri, _), identity_server(env) as server:
        owner = cli(env, "users", "create", "--email", OWNER, "--password-stdin", stdin=PASSWORD)
        client = cli(
            env, "clients", "create", "--name", "Portal", "--redirect-uri", redirect_uri,
            "--scope", "openid email",
        )  # fmt: skip
        settings = Settings.from_env(env | {"IDENTITY_ISSUER": server.base_url})
        # Two accounts: signing in then asks which one.
        account_id = asyncio.run(_create_account(settings, owner["id"]))
        asyncio.run(_create_account(settings, owner["id"]))
        site = Site(
            server.base_url, settings.outbox_dir, client["client_id"], redirect_uri, account_id,
            locale,
        )  # fmt: skip
        audit = Audit(axe_source, lang)
        with chromium() as browser:
            _walk(browser, site, audit)
    assert audit.problems == {}, json.dumps(audit.problems, indent=2, ensure_ascii=False)
