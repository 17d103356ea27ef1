"""The kit must import in a service that has none of the server's dependencies."""

from __future__ import annotations

import json
import subprocess
import sys

SERVER_ONLY = ("sqlalchemy", "litestar", "authlib", "alembic", "redis", "argon2")

# A None entry in sys.modules makes any import of that name fail, as if it were not installed.
SCRIPT = f"""
import json, sys
for name in {SERVER_ONLY!r}:
    sys.modules[name] = None
import identity.resource
import identity.resource.asgi
print(json.dumps(sorted(m for m in sys.modules if m.startswith("identity."))))
"""


def test_the_kit_imports_with_the_servers_dependencies_missing() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert all(name.startswith("identity.resource") for name in loaded), loaded
