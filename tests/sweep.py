"""How hard the security sweep (schemathesis, the OAuth fuzzer) tries.

By default, few examples, so the suite stays quick. ``SWEEP_EXAMPLES=60`` asks for at least
that many per operation (schemathesis: per mode too) and fresh random inputs on every run:
what found the NUL and date 500s that tests/integration/test_sweep_regressions.py now keeps
out.
"""

from __future__ import annotations

import os

_ASKED = os.environ.get("SWEEP_EXAMPLES")
DEEP = _ASKED is not None


def examples(default: int) -> int:
    return max(default, int(_ASKED)) if _ASKED else default
