"""What no OAuth or OpenID Connect parameter may hold, whichever endpoint reads it."""

from __future__ import annotations

import re

# No parameter defined by the specifications holds one, and PostgreSQL cannot even compare
# a text value holding NUL: a value with one is refused before it reaches any lookup.
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
