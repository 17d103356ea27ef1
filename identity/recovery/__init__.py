"""Account recovery: password reset by email link, and staff-assisted change of sign-in email."""
