"""Loading policies/permissions.toml and roles.toml: the shipped files, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from identity.errors import InvalidInput
from identity.permissions.catalogue import (
    CatalogueError,
    check_registered_name,
    load_policies,
)
from identity.settings import DEFAULT_POLICIES_DIR, Settings, SettingsError

WHMCS = [
    "profile",
    "contacts",
    "products",
    "manageproducts",
    "productsso",
    "domains",
    "managedomains",
    "invoices",
    "quotes",
    "tickets",
    "affiliates",
    "emails",
    "orders",
    "users",
]
GOOD_PERMISSIONS = """
[permissions.tickets]
label = { en = "Tickets", es = "Tickets" }
description = { en = "Open tickets", es = "Abrir tickets" }
"""
GOOD_ROLES = """
[roles.support]
name = { en = "Support", es = "Soporte" }
permissions = ["tickets"]
"""


def _policies(tmp_path: Path, permissions: str = GOOD_PERMISSIONS, roles: str = GOOD_ROLES) -> Path:
    (tmp_path / "permissions.toml").write_text(permissions)
    (tmp_path / "roles.toml").write_text(roles)
    return tmp_path


def test_the_shipped_catalogue_is_the_whmcs_one_plus_users_in_english_and_spanish() -> None:
    policies = load_policies(DEFAULT_POLICIES_DIR)
    assert list(policies.permissions) == WHMCS
    for entry in policies.permissions.values():
        assert set(entry.label) == set(entry.description) == {"en", "es"}
    assert policies.permissions["invoices"].label == {"en": "Invoices", "es": "Facturas"}


def test_the_shipped_role_templates_name_known_permissions_in_both_languages() -> None:
    policies = load_policies(DEFAULT_POLICIES_DIR)
    assert {"billing", "technical", "support"} <= set(policies.roles)
    assert policies.roles["billing"].name == {"en": "Billing", "es": "Facturación"}
    for role in policies.roles.values():
        assert set(role.permissions) <= set(policies.permissions)


def test_a_small_valid_pair_of_files_loads(tmp_path: Path) -> None:
    policies = load_policies(_policies(tmp_path))
    assert policies.builtin_names == {"tickets"}
    assert policies.roles["support"].permissions == ("tickets",)


@pytest.mark.parametrize(
    ("permissions", "roles", "file", "key"),
    [
        (
            GOOD_PERMISSIONS.replace(', es = "Tickets"', ""),
            GOOD_ROLES,
            "permissions.toml",
            "permissions.tickets.label",
        ),
        (
            GOOD_PERMISSIONS.replace("[permissions.tickets]", "[permissions.Tickets]"),
            GOOD_ROLES,
            "permissions.toml",
            "permissions.Tickets",
        ),
        (
            GOOD_PERMISSIONS + 'colour = "red"\n',
            GOOD_ROLES,
            "permissions.toml",
            "permissions.tickets.colour",
        ),
        (
            GOOD_PERMISSIONS,
            GOOD_ROLES.replace('"tickets"', '"refunds"'),
            "roles.toml",
            "roles.support.permissions",
        ),
        (
            GOOD_PERMISSIONS,
            GOOD_ROLES.replace('es = "Soporte"', 'es = ""'),
            "roles.toml",
            "roles.support.name",
        ),
        (
            GOOD_PERMISSIONS,
            # Shown as "Soporte" reversed after U+202E, on the Users page and in the API.
            GOOD_ROLES.replace('es = "Soporte"', 'es = "Facturas\\u202Eetroprop"'),
            "roles.toml",
            "roles.support.name",
        ),
        (
            GOOD_PERMISSIONS,
            GOOD_ROLES.replace('en = "Support"', 'en = "' + "S" * 101 + '"'),
            "roles.toml",
            "roles.support.name",
        ),
        (
            GOOD_PERMISSIONS.replace('en = "Tickets"', 'en = "Tickets\\nAll permissions"'),
            GOOD_ROLES,
            "permissions.toml",
            "permissions.tickets.label",
        ),
        (
            GOOD_PERMISSIONS.replace('en = "Open tickets"', 'en = "Open\\u2066 tickets"'),
            GOOD_ROLES,
            "permissions.toml",
            "permissions.tickets.description",
        ),
        (GOOD_PERMISSIONS, "[roles]\n", "roles.toml", "roles"),
        ("[permissions.tickets\n", GOOD_ROLES, "permissions.toml", ""),
    ],
    ids=[
        "missing-language",
        "bad-name",
        "unknown-field",
        "unknown-permission-in-role",
        "empty-text",
        "direction-override",
        "longer-than-its-column",
        "line-break",
        "direction-isolate",
        "no-roles",
        "not-toml",
    ],
)
def test_a_mistake_names_the_file_and_the_key(
    tmp_path: Path, permissions: str, roles: str, file: str, key: str
) -> None:
    with pytest.raises(CatalogueError) as error:
        load_policies(_policies(tmp_path, permissions, roles))
    assert error.value.path.name == file
    assert error.value.key == key
    assert file in str(error.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "permissions.toml").write_text(GOOD_PERMISSIONS)
    with pytest.raises(CatalogueError, match=r"roles\.toml: the file is missing"):
        load_policies(tmp_path)


def test_the_policies_dir_setting_must_be_a_folder(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="IDENTITY_POLICIES_DIR"):
        Settings.from_env({"IDENTITY_POLICIES_DIR": str(tmp_path / "nowhere")})


@pytest.mark.parametrize("name", ["billing:refunds", "crm:export-csv", "a:b_c"])
def test_registered_permissions_are_namespaced_by_service(name: str) -> None:
    assert check_registered_name(name) == name


@pytest.mark.parametrize(
    "name", ["refunds", "Billing:refunds", "billing:", "a:b:c", "x:" + "y" * 99]
)
def test_malformed_registered_names_are_refused_naming_the_field(name: str) -> None:
    with pytest.raises(InvalidInput) as error:
        check_registered_name(name)
    assert error.value.extra["errors"][0]["field"] == "name"


def test_a_file_catalogue_too_long_for_an_owners_token_is_refused(tmp_path: Path) -> None:
    # An owner's access token lists every permission. Registration through the API kept the
    # list within MAX_CATALOGUE, but the file was never measured: a long permissions.toml
    # made every owner's token too long for the services that read it.
    def entries(count: int) -> str:
        return GOOD_PERMISSIONS + "".join(
            f'[permissions.p{i:03d}_{"x" * 90}]\nlabel = {{ en = "P", es = "P" }}\n'
            f'description = {{ en = "P", es = "P" }}\n'
            for i in range(count)
        )

    # Each listed name takes 98 bytes with its quotes and comma, "tickets" 10, the brackets
    # 2: 41 fit in 4,096 bytes (4,029), 42 do not (4,127).
    assert len(load_policies(_policies(tmp_path, entries(41))).permissions) == 42
    with pytest.raises(CatalogueError, match="4127 bytes") as refused:
        load_policies(_policies(tmp_path, entries(42)))
    assert "permissions.toml" in str(refused.value)
