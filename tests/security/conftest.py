"""Apps with two tenants and an admin, over either store, for the adversarial tests."""

from __future__ import annotations

import pytest

from adapters_store.disk_store import DiskStore
from server.auth import ApiKey
from tests.conftest import DEFAULT_MODEL_DIR, make_settings, running_client

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


@pytest.fixture(scope="session")
def head_files() -> dict[str, bytes]:
    """Two real, different heads: acme uploads one, globex the other."""
    shipped = DiskStore(DEFAULT_MODEL_DIR / "heads")
    return {"acme": shipped.get_bytes("fsdd-george"), "globex": shipped.get_bytes("fsdd-theo")}


@pytest.fixture(params=["disk", "redis"])
async def tenants(request, tmp_path):
    """(client, settings) of a keyed app over the disk store or a real Redis."""
    redis_server = request.getfixturevalue("redis_server") if request.param == "redis" else None
    settings = keyed_settings(tmp_path, request.param, redis_server)
    async with running_client(settings) as client:
        yield client, settings
