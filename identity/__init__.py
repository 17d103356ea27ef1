"""identity: an OAuth 2.0 / OpenID Connect provider and permission service."""

__version__ = "0.1.0"
