"""Administration: users, API keys, the audit log (admin role only)."""
