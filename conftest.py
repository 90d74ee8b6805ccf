import os
import secrets

pytest_plugins = ["glioscope_common.dev.testing"]

# Every service refuses to start without its keys (no published default exists): the test session
# makes its own, which the services started by the tests inherit. Tests that check the refusal pass
# their values explicitly.
os.environ.setdefault("GLIOSCOPE_SERVICE_TOKEN", "test-session-" + secrets.token_urlsafe(32))
os.environ.setdefault("GLIOSCOPE_JWT_SECRET", "test-session-jwt-" + secrets.token_urlsafe(32))
