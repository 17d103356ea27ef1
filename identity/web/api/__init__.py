"""The management API under /api/v1/: JSON, problem details on errors."""
