"""The append-only audit log of every access to study data (table `audit_events`)."""
