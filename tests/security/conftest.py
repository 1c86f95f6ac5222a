"""Apps with two tenants and an admin, over either store, for the adversarial tests."""

from __future__ import annotations

import pytest

from adapters_store.disk_store import DiskStore
from tests.helpers import DEFAULT_MODEL_DIR, running_client
from tests.security.helpers import keyed_settings


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
