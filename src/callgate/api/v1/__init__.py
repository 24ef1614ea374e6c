"""The v1 API: Bearer auth, problem+json errors, calls and channels (OpenAPI at /docs)."""
