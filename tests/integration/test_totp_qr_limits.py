"""The TOTP enrolment QR code holds the longest product name beside the longest email.

segno raises DataOverflowError when the provisioning URI outgrows the largest QR code
(version 40, level M, 2331 bytes): the product name appears there twice, percent-encoded.
"""

from __future__ import annotations

import pytest

from identity.clock import utcnow
from identity.mfa.service import SecondFactor
from identity.runtime import Runtime
from identity.settings import MAX_PRODUCT_NAME, Settings, SettingsError
from tests.integration.recovery_helpers import new_user

WIDE = "\U00020000"  # a letter 4 bytes long in UTF-8: 12 once percent-encoded
LONGEST_EMAIL = WIDE * 64 + "@" + ".".join(["a" * 63] * 3 + ["b" * 61])


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    return env | {"IDENTITY_PRODUCT_NAME": WIDE * MAX_PRODUCT_NAME}


def test_a_product_name_too_long_for_the_qr_code_stops_start_up(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match="IDENTITY_PRODUCT_NAME must be at most"):
        Settings.from_env(env | {"IDENTITY_PRODUCT_NAME": "x" * (MAX_PRODUCT_NAME + 1)})


async def test_the_longest_product_name_and_email_fit_the_qr_code(runtime: Runtime) -> None:
    user = await new_user(runtime, LONGEST_EMAIL)
    async with runtime.db.transaction() as session:
        enrolment = await SecondFactor.from_runtime(runtime).begin_enrolment(
            session, user, utcnow()
        )
    assert enrolment.qr_svg.startswith("<svg")
