"""Hosted forms are read only when urlencoded, as every one of our forms posts them.

Litestar decodes each multipart part with the charset the part itself names: bytes that are
not UTF-8, or a charset Python does not know, raised out of ``request.form()`` as a 500 on
every hosted form; a charset such as ``punycode`` costs quadratic time. A multipart post now
reads as an empty form, so the page answers as for a missing field.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.integration.test_pages_odd_input import FORMS

BOUNDARY = "b0undary"
PARTS = {
    "not UTF-8": b"Content-Disposition: form-data; name=%s\r\n\r\n\xff\xfe",
    "unknown charset": b"Content-Disposition: form-data; name=%s\r\n"
    b"Content-Type: text/plain; charset=no-such-charset\r\n\r\nx",
    "not a text encoding": b"Content-Disposition: form-data; name=%s\r\n"
    b"Content-Type: text/plain; charset=rot13\r\n\r\nx",
}


def multipart(names: list[str], part: bytes) -> bytes:
    sections = [b"--%s\r\n%s\r\n" % (BOUNDARY.encode(), part % name.encode()) for name in names]
    return b"".join(sections) + b"--%s--\r\n" % BOUNDARY.encode()


# A fixed account id: test ids must be the same in every pytest-xdist worker.
SIGNED_IN_FORMS = ["/account/security/name", f"/accounts/{uuid.UUID(int=1)}/users/invite"]


@pytest.mark.parametrize("part", PARTS.values(), ids=PARTS.keys())
@pytest.mark.parametrize("path", [*FORMS, "/authorize", "/login/account", *SIGNED_IN_FORMS])
async def test_a_multipart_post_gets_a_page_not_a_server_error(
    client: httpx.AsyncClient, path: str, part: bytes
) -> None:
    assert (await client.get("/password/forgot")).status_code == 200  # sets the CSRF seed
    names = FORMS.get(path, ["flow", "csrf_token", "client_id"])
    response = await client.post(
        path,
        content=multipart(names, part),
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert response.status_code < 500, response.text
    if response.status_code != 303:  # a signed-in page sends a stranger to sign in
        assert response.headers["content-type"].startswith("text/html"), response.text
