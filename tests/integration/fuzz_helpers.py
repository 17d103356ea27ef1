"""What the fuzz tests share: the garbage Hypothesis mixes with valid values, and how hard
it tries (tests/sweep.py)."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests import sweep

garbage = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=200, max_size=3000),
    st.sampled_from(["", " ", "\x00", "%00", "' OR 1=1 --", "é" * 300, "a b", "\u202e"]),
)

FUZZ = settings(
    max_examples=sweep.examples(100),
    deadline=None,
    derandomize=not sweep.DEEP,  # CI sends the same requests every run, as tests/sweep.py says
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
