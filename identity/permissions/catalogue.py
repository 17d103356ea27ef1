"""The permission catalogue and role templates: policies/*.toml plus what staff register.

The files are read once at start-up and checked entry by entry, so a typo stops the server
with the file and key named instead of surfacing later as a permission nobody can grant.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from identity.audit.service import Actor, record_as
from identity.clock import utcnow
from identity.db.engine import Database
from identity.display_names import display_name
from identity.errors import DomainError, InvalidInput
from identity.permissions import repository, role_holders
from identity.permissions.models import Role
from identity.resource.validator import DEFAULT_MAX_TOKEN_BYTES
from identity.settings import DEFAULT_POLICIES_DIR
from identity.toml_file import UnreadableToml, read_toml

LANGUAGES = ("en", "es")
FROM_ROLES_FILE = Actor(source="policies/roles.toml")
MAX_NAME = 100  # the permissions.name and role_permissions.permission columns
# Names shown on the Users page, from these files or registered through the API alike.
MAX_ROLE_NAME = 100  # the roles.name column
MAX_PERMISSION_LABEL = 200
MAX_PERMISSION_DESCRIPTION = 2000
# Lower-case words joined by "-" or "_"; a registered permission is "service:name" so it can
# never collide with a built-in one, nor two services with each other.
_WORD = r"[a-z][a-z0-9_-]*"
BUILTIN_NAME = re.compile(_WORD)
REGISTERED_NAME = re.compile(rf"{_WORD}:{_WORD}")
ANY_NAME_PATTERN = rf"^{_WORD}(:{_WORD})?$"
# An owner's access token lists the whole catalogue, and services refuse a token longer than
# the resource kit's limit (8 KB) as malformed: past that, every owner would be locked out of
# every service at their next token. Half the limit for the list leaves the rest of the token
# (a signature, the other claims, base64's third more) room below it. The file's names and
# the registered ones together.
MAX_CATALOGUE = DEFAULT_MAX_TOKEN_BYTES // 2
CATALOGUE_FULL = (
    "The permission catalogue is full: an owner's access token lists every permission, and"
    f" their names may take at most {MAX_CATALOGUE} bytes so that services still accept it."
)


class CatalogueError(ValueError):
    """A policies file is missing or wrong; ``str()`` names the file and the key."""

    def __init__(self, path: Path, key: str, problem: str) -> None:
        self.path, self.key = path, key
        super().__init__(f"{path}: {key}: {problem}" if key else f"{path}: {problem}")


@dataclass(frozen=True, slots=True)
class PermissionInfo:
    name: str
    label: dict[str, str]
    description: dict[str, str]


@dataclass(frozen=True, slots=True)
class RoleTemplate:
    key: str
    name: dict[str, str]
    permissions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Policies:
    """What the files say; the registered permissions come from the database on top."""

    permissions: dict[str, PermissionInfo]
    roles: dict[str, RoleTemplate]

    @property
    def builtin_names(self) -> frozenset[str]:
        return frozenset(self.permissions)


def invalid_field(field: str, message: str, error: type[DomainError] = InvalidInput) -> DomainError:
    """A domain refusal about one request field, rendered like Litestar's validation errors."""
    return error(message, errors=[{"field": field, "message": message}])


def once_each(field: str, keys: Iterable[Any]) -> None:
    """Refuse ``keys`` naming an entry twice: of a member's or a role's two grants of one
    permission, or a client's two equal URIs, one would silently win while the audit log
    recorded both."""
    twice = sorted(str(key) for key, times in Counter(keys).items() if times > 1)
    if twice:
        raise invalid_field(field, f"Listed more than once: {', '.join(twice)}.")


def check_registered_name(name: str) -> str:
    """A name staff may register for a consuming service; raises ``InvalidInput``."""
    if len(name) > MAX_NAME or not REGISTERED_NAME.fullmatch(name):
        raise invalid_field(
            "name",
            "The permission name must look like service:action (lower-case letters, digits, "
            f"'-' or '_', at most {MAX_NAME} characters), such as billing:refunds.",
        )
    return name


def _read(path: Path) -> dict[str, Any]:
    try:
        return read_toml(path)
    except UnreadableToml as exc:
        raise CatalogueError(path, "", str(exc)) from None


def _texts(path: Path, key: str, value: Any, max_length: int) -> dict[str, str]:
    """Held to the rules of names the API applies (``display_name``): a role name too long
    for its column, a line break or a direction override would otherwise reach the pages."""
    if not isinstance(value, dict) or set(value) != set(LANGUAGES):
        raise CatalogueError(path, key, "needs exactly the languages " + ", ".join(LANGUAGES))
    if not all(isinstance(text, str) and text.strip() for text in value.values()):
        raise CatalogueError(path, key, "every language needs non-empty text")
    try:
        return {language: display_name(value[language], max_length) for language in LANGUAGES}
    except InvalidInput as exc:
        raise CatalogueError(path, key, exc.detail) from None


def _section(path: Path, document: dict[str, Any], name: str) -> dict[str, Any]:
    section = document.get(name)
    if not isinstance(section, dict) or not section:
        raise CatalogueError(path, name, f"the file needs a non-empty [{name}] table")
    unknown = set(document) - {name}
    if unknown:
        raise CatalogueError(path, sorted(unknown)[0], "is not a known table")
    return section


def _entry(path: Path, key: str, value: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CatalogueError(path, key, "must be a table")
    unknown = set(value) - allowed
    if unknown:
        raise CatalogueError(path, f"{key}.{sorted(unknown)[0]}", "is not a known field")
    return value


def listed_size(names: Iterable[str]) -> int:
    """The bytes of the ``permissions`` claim listing ``names``."""
    return len(json.dumps(sorted(names), separators=(",", ":")).encode())


def load_permissions(path: Path) -> dict[str, PermissionInfo]:
    permissions: dict[str, PermissionInfo] = {}
    for name, raw in _section(path, _read(path), "permissions").items():
        key = f"permissions.{name}"
        if len(name) > MAX_NAME or not BUILTIN_NAME.fullmatch(name):
            raise CatalogueError(path, key, "names must be lower-case letters, digits, - or _")
        entry = _entry(path, key, raw, {"label", "description"})
        permissions[name] = PermissionInfo(
            name=name,
            label=_texts(path, f"{key}.label", entry.get("label"), MAX_PERMISSION_LABEL),
            description=_texts(
                path, f"{key}.description", entry.get("description"), MAX_PERMISSION_DESCRIPTION
            ),
        )
    if (size := listed_size(permissions)) > MAX_CATALOGUE:
        raise CatalogueError(
            path,
            "permissions",
            f"the names take {size} bytes listed, over {MAX_CATALOGUE}: an owner's access"
            " token lists every permission, and services refuse one that long",
        )
    return permissions


def load_roles(path: Path, permissions: dict[str, PermissionInfo]) -> dict[str, RoleTemplate]:
    roles: dict[str, RoleTemplate] = {}
    for role_key, raw in _section(path, _read(path), "roles").items():
        key = f"roles.{role_key}"
        entry = _entry(path, key, raw, {"name", "permissions"})
        granted = entry.get("permissions")
        if not isinstance(granted, list) or not granted:
            raise CatalogueError(path, f"{key}.permissions", "must be a non-empty list")
        for permission in granted:
            if permission not in permissions:
                raise CatalogueError(
                    path, f"{key}.permissions", f"{permission!r} is not in permissions.toml"
                )
        name = _texts(path, f"{key}.name", entry.get("name"), MAX_ROLE_NAME)
        roles[role_key] = RoleTemplate(role_key, name, tuple(dict.fromkeys(granted)))
    return roles


def load_policies(directory: Path) -> Policies:
    """Both files of ``directory`` (``IDENTITY_POLICIES_DIR``); raises ``CatalogueError``."""
    if not directory.is_dir():
        raise CatalogueError(directory, "", "is not a folder (IDENTITY_POLICIES_DIR)")
    permissions = load_permissions(directory / "permissions.toml")
    return Policies(permissions, load_roles(directory / "roles.toml", permissions))


class Catalogue:
    """The files' catalogue plus the permissions registered in the database.

    Held by the runtime; ``ensure_templates`` copies roles.toml's templates into the roles
    table the first time a process needs them, so role grants can point at them.
    """

    def __init__(self, policies: Policies) -> None:
        self.policies = policies
        self._templates_ready = False

    async def names(self, session: AsyncSession) -> frozenset[str]:
        """Every permission there is: what an owner or an "all permissions" member holds."""
        return self.policies.builtin_names | await repository.registered_names(session)

    async def among(self, session: AsyncSession, names: Iterable[str]) -> set[str]:
        """Those of ``names`` the catalogue holds, asking the database only about names
        outside the files' (none, for most members)."""
        wanted = set(names)
        outside = wanted - self.policies.builtin_names
        return (wanted - outside) | await repository.registered_among(session, outside)

    async def unknown(self, session: AsyncSession, names: Iterable[str]) -> list[str]:
        wanted = set(names)
        return sorted(wanted - await self.among(session, wanted))

    async def entries(self, session: AsyncSession) -> list[PermissionInfo]:
        registered = [
            PermissionInfo(
                name=row.name,
                label={"en": row.label_en, "es": row.label_es},
                description={"en": row.description_en, "es": row.description_es},
            )
            for row in await repository.registered_permissions(session)
        ]
        return [*self.policies.permissions.values(), *registered]

    async def ensure_templates(self, db: Database) -> None:
        """Also brings the stored copy up to the file's: a template edited in roles.toml
        between restarts changes its holders' rights as an edit through the API would, and
        tells them so (``role_holders``); the first process to start with the new file
        does, those after it find the copy as the file says."""
        if self._templates_ready:
            return
        async with db.transaction() as session:
            await repository.lock_templates(session)
            # A template new to the table is no change to anyone's rights: not audited.
            known = {role.key for role in await repository.file_templates(session)}
            for template in self.policies.roles.values():
                await repository.insert_template_if_missing(
                    session, template.key, template.name["en"]
                )
            stored = await repository.file_templates(session)
            held = await repository.role_permissions(session, [role.id for role in stored])
            # Every template about to change is locked before any is (``replace_permissions``
            # says why), all at once: ``lock_several_roles`` says why.
            await repository.lock_several_roles(
                session,
                [role.id for role in stored if self._differs(role, held[role.id])],
            )
            for role in stored:
                template = self.policies.roles.get(role.key or "")
                if template is None:
                    continue  # removed from the file: kept for its holders, now staff's to change
                old = {"name": role.name, "permissions": held[role.id]}
                if set(held[role.id]) != set(template.permissions):
                    await role_holders.replace_permissions(
                        session, role.id, template.permissions, utcnow()
                    )
                role.name, role.name_es = template.name["en"], template.name["es"]
                new = {"name": role.name, "permissions": sorted(template.permissions)}
                if role.key in known and new != old:
                    # As an edit through the API is: it changes what its holders may do.
                    await record_as(
                        session,
                        FROM_ROLES_FILE,
                        "role.updated",
                        account_id=None,
                        target=("role", role.id),
                        old=old,
                        new=new,
                    )
        self._templates_ready = True

    def _differs(self, role: Role, permissions: Sequence[str]) -> bool:
        """Whether the copy rewrites the stored template ``role``, which holds
        ``permissions``: its name or permissions are not the file's. One taken out of the
        file is left as it is."""
        template = self.policies.roles.get(role.key or "")
        if template is None:
            return False
        names = (role.name, role.name_es) != (template.name["en"], template.name["es"])
        return names or set(permissions) != set(template.permissions)


_installed: Policies | None = None


def install(policies: Policies) -> None:
    """Make ``policies`` the process's catalogue (the runtime does, from its settings)."""
    global _installed
    _installed = policies


def installed() -> Policies:
    """The process's catalogue, for callers with no runtime at hand (the token side)."""
    return _installed if _installed is not None else load_policies(DEFAULT_POLICIES_DIR)


def or_installed(catalogue: Catalogue | None) -> Catalogue:
    """The catalogue given, or the installed policies' when the caller has none at hand."""
    return catalogue if catalogue is not None else Catalogue(installed())
