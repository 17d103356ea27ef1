"""What handlers may ask for by name: ``runtime: RuntimeDep``."""

from __future__ import annotations

from typing import TypeAlias

from litestar.datastructures import State
from litestar.di import NamedDependency

from identity.runtime import Runtime

RuntimeDep: TypeAlias = NamedDependency[Runtime]


def provide_runtime(state: State) -> Runtime:
    return state.runtime
