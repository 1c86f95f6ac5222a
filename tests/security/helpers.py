"""Keys of two tenants and an admin, and keyed settings, for the adversarial tests."""

from __future__ import annotations

from server.auth import ApiKey
from tests.helpers import make_settings

ADMIN, ACME, GLOBEX = "admin-key-123", "acme-key-456", "globex-key-789"
KEYS = {"admin": ADMIN, "acme": ACME, "globex": GLOBEX}


def auth(who: str) -> dict:
    return {"Authorization": f"Bearer {KEYS[who]}"}


def keyed_settings(tmp_path, store: str, redis_server=None, **overrides):
    values = dict(
        open_access=False,
        api_keys=[
            ApiKey(key=ADMIN, admin=True),
            ApiKey(key=ACME, tenant="acme"),
            ApiKey(key=GLOBEX, tenant="globex"),
        ],
        store=store,
    )
    if store == "redis":
        values["redis_url"] = redis_server.url
    values.update(overrides)
    return make_settings(tmp_path, **values)
