"""The OAuth 2.0 / OpenID Connect protocol rules: no SQL and no HTML here."""
