"""Storage of what the OAuth endpoints issue: codes, refresh tokens, consents, revocations."""
