"""/api/v1/password: the policy in force, the live check and the generator."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from identity.accounts import password_generator
from identity.runtime import Runtime
from identity.settings import DEFAULT_POLICIES_DIR
from identity.web.api.password import CHECK_LIMIT
from tests.conftest import FAST_POLICY
from tests.policy_files import strictest_policy

CHECK = "/api/v1/password/check"


async def test_policy_is_published_with_texts_in_english_and_spanish(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/v1/password/policy")
    assert response.status_code == 200
    body = response.json()
    assert body["preset"] == "portal"
    assert (body["min_length"], body["max_length"]) == (8, 64)
    assert body["require"] == ["lower", "upper", "symbol"]
    assert body["rules"][0] == {
        "id": "policy.min_length",
        "messages": {"en": "At least 8 characters.", "es": "Al menos 8 caracteres."},
    }
    assert body["reasons"]["password.too_short"]["es"] == "Usa al menos 8 caracteres."
    assert all(set(texts) == {"en", "es"} for texts in body["reasons"].values())


async def test_check_refuses_a_disguised_spanish_word_with_reasons_and_score(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(CHECK, json={"password": "Verano2025#"})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["accepted"] is False
    assert 0 <= body["score"] <= 4
    assert [r["id"] for r in body["reasons"]] == ["password.dictionary_word"]
    assert set(body["reasons"][0]["messages"]) == {"en", "es"}


async def test_check_uses_the_email_and_name_given(client: httpx.AsyncClient) -> None:
    password = "Acme#Qz97xwR"
    alone = (await client.post(CHECK, json={"password": password})).json()
    assert alone["accepted"] is True
    response = await client.post(
        CHECK, json={"password": password, "email": "maria@acme.com", "name": "María"}
    )
    assert [r["id"] for r in response.json()["reasons"]] == ["password.personal_info"]


async def test_check_never_logs_the_password(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await client.post(CHECK, json={"password": "Secret#Kx7mQ9vB"})
    await client.post(CHECK, json={"password": 12345678})
    assert "Kx7mQ9vB" not in caplog.text
    assert "12345678" not in caplog.text


async def test_check_wants_json(client: httpx.AsyncClient) -> None:
    response = await client.post(CHECK, data={"password": "Kx7#mQ9!vB2$"})
    assert response.status_code == 415
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 415


async def test_malformed_json_is_a_400_problem(client: httpx.AsyncClient) -> None:
    response = await client.post(
        CHECK, content=b'{"password": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"


async def test_missing_password_is_a_400_problem_naming_the_field(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(CHECK, json={"email": "a@b.com"})
    assert response.status_code == 400
    assert "password" in response.text


async def test_oversized_body_is_a_413_problem(client: httpx.AsyncClient) -> None:
    response = await client.post(CHECK, json={"password": "x" * 100_000})
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


async def test_an_overlong_password_within_the_body_cap_is_refused_as_too_long(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(CHECK, json={"password": "Kx7#mQ9!vB2$" * 1000})
    assert [r["id"] for r in response.json()["reasons"]] == ["password.too_long"]


async def test_check_is_rate_limited_per_client_with_retry_after(
    client: httpx.AsyncClient,
) -> None:
    for _ in range(CHECK_LIMIT.max):
        assert (await client.post(CHECK, json={"password": "x"})).status_code == 200
    response = await client.post(CHECK, json={"password": "x"})
    assert response.status_code == 429
    assert response.headers["content-type"] == "application/problem+json"
    assert 0 < int(response.headers["retry-after"]) <= CHECK_LIMIT.window
    assert response.json()["type"] == "urn:identity:problem:rate-limited"


async def test_generate_returns_a_password_the_policy_accepts(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    response = await client.get("/api/v1/password/generate")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    password = response.json()["password"]
    assert len(password) == 16
    assert (await runtime.passwords.check(password)).accepted


async def test_generate_takes_a_length_within_the_policy(client: httpx.AsyncClient) -> None:
    assert len((await client.get("/api/v1/password/generate?length=40")).json()["password"]) == 40
    too_long = await client.get("/api/v1/password/generate?length=65")
    assert too_long.status_code == 422
    assert too_long.json()["detail"] == "The length must be from 12 to 64 characters."
    assert (await client.get("/api/v1/password/generate?length=2000")).status_code == 400
    assert (await client.get("/api/v1/password/generate?length=ten")).status_code == 400


async def test_a_policy_no_draw_passes_is_a_problem_not_a_500(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The generator's way out when its draws run out (a policy no password can pass): no
    policy file here is that strict any more, so the draws are cut to none."""
    monkeypatch.setattr(password_generator, "MAX_DRAWS", 0)
    response = await client.get("/api/v1/password/generate?length=64")
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "shorter" in response.json()["detail"]


class TestAPolicyLongerThanTheDefaultLength:
    @pytest.fixture
    def env(self, env: dict[str, str], tmp_path: Path) -> dict[str, str]:
        words = DEFAULT_POLICIES_DIR / "password-words.txt"
        text = FAST_POLICY.read_text(encoding="utf-8").replace("min_length = 8", "min_length = 20")
        text = text.replace('"../../policies/password-words.txt"', f'"{words}"')
        policy = tmp_path / "password-20.toml"
        policy.write_text(text, encoding="utf-8")
        return env | {"IDENTITY_PASSWORD_POLICY": str(policy)}

    async def test_generate_without_a_length_proposes_the_minimum(
        self, client: httpx.AsyncClient, runtime: Runtime
    ) -> None:
        response = await client.get("/api/v1/password/generate")
        assert response.status_code == 200, response.text
        password = response.json()["password"]
        assert len(password) == 20
        assert (await runtime.passwords.check(password)).accepted


class TestTheStrictestPolicy:
    """Three-letter words from 200,000 per language: nearly every long random string spells
    one (digits and symbols read as letters), yet the generator proposes a password."""

    @pytest.fixture
    def env(self, env: dict[str, str], tmp_path: Path) -> dict[str, str]:
        return env | {"IDENTITY_PASSWORD_POLICY": str(strictest_policy(tmp_path))}

    @pytest.mark.parametrize("length", [12, 16, 64])
    async def test_a_password_is_proposed_at_any_length(
        self, client: httpx.AsyncClient, runtime: Runtime, length: int
    ) -> None:
        response = await client.get(f"/api/v1/password/generate?length={length}")

        assert response.status_code == 200, response.text
        password = response.json()["password"]
        assert len(password) == length
        assert (await runtime.passwords.check(password)).accepted


async def test_openapi_document_shows_the_password_schemas(client: httpx.AsyncClient) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    schemas = document["components"]["schemas"]
    assert set(schemas["CheckRequest"]["properties"]) == {"password", "email", "name"}
    assert set(schemas["CheckResult"]["properties"]) == {"accepted", "score", "reasons"}
    assert "/api/v1/password/policy" in document["paths"]
    assert "/api/v1/password/generate" in document["paths"]
