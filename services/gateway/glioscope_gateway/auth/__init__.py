"""Authentication (local JWTs, OIDC tokens, API keys) and authorisation (roles, projects)."""
