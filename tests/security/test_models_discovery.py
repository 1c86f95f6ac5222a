"""GET /v1/models and /v1/models/{id}, spoken to by the real `openai` client, both stores."""

from __future__ import annotations

import httpx
import openai
import pytest

from adapters_store.seeding import seed_store
from tests.helpers import DEFAULT_MODEL_DIR, running_client
from tests.security.helpers import KEYS, auth, keyed_settings

SHIPPED = sorted(p.name for p in (DEFAULT_MODEL_DIR / "heads").iterdir() if p.is_dir())


def _openai(client: httpx.AsyncClient, who: str) -> openai.AsyncOpenAI:
    """The openai client, over the same in-process HTTP transport as the test client."""
    http = httpx.AsyncClient(transport=client._transport, base_url="http://hra")
    return openai.AsyncOpenAI(api_key=KEYS[who], base_url="http://hra/v1", http_client=http)


@pytest.fixture
async def catalog(tenants, head_files):
    """Shipped heads seeded (public); acme owns acme-a, globex owns globex-b (private)."""
    client, settings = tenants
    await seed_store(client.app.state.runtime.store, DEFAULT_MODEL_DIR / "heads")
    for task, who in (("acme-a", "acme"), ("globex-b", "globex")):
        r = await client.put(
            f"/v1/tasks/{task}", files={"file": ("h", head_files[who])}, headers=auth(who)
        )
        assert r.status_code == 200, r.text
    return client


async def test_models_list_shows_exactly_the_models_each_caller_may_use(catalog):
    expected = {
        "acme": ["base", *sorted(["acme-a", *SHIPPED])],
        "globex": ["base", *sorted(["globex-b", *SHIPPED])],
        "admin": ["base", *sorted(["acme-a", "globex-b", *SHIPPED])],
    }
    for who, ids in expected.items():
        page = await _openai(catalog, who).models.list()
        assert [m.id for m in page.data] == ids, who
        assert all(m.object == "model" for m in page.data)
    raw = (await catalog.get("/v1/models", headers=auth("acme"))).json()
    assert raw["object"] == "list" and raw["has_more"] is False
    owners = {m["id"]: m["owned_by"] for m in raw["data"]}
    assert owners["acme-a"] == "acme" and owners["fsdd-george"] == "system"
    assert owners["base"] == "system"


async def test_models_retrieve_answers_usable_ones_and_404_for_foreign_private_ones(catalog):
    acme = _openai(catalog, "acme")
    own = await acme.models.retrieve("acme-a")
    assert own.id == "acme-a" and own.owned_by == "acme" and own.created > 1_600_000_000
    shipped = await acme.models.retrieve("fsdd-george")
    assert shipped.owned_by == "system"
    assert (await acme.models.retrieve("base")).id == "base"
    for missing in ("globex-b", "no-such-task"):
        with pytest.raises(openai.NotFoundError) as caught:
            await acme.models.retrieve(missing)
        assert caught.value.body["code"] == "unknown_task"
    # Same answer for a foreign private task and a missing one: nothing leaks.
    a = await catalog.get("/v1/models/globex-b", headers=auth("acme"))
    b = await catalog.get("/v1/models/no-such-task", headers=auth("acme"))
    assert a.status_code == b.status_code == 404
    assert a.json()["error"]["code"] == b.json()["error"]["code"]


async def test_models_list_requires_a_key(catalog):
    r = await catalog.get("/v1/models")
    assert r.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        await openai.AsyncOpenAI(
            api_key="wrong",
            base_url="http://hra/v1",
            http_client=httpx.AsyncClient(transport=catalog._transport, base_url="http://hra"),
        ).models.list()


async def test_models_list_is_capped_and_pages_cover_everything_once(
    tmp_path, redis_server, head_files
):
    settings = keyed_settings(tmp_path, "redis", redis_server, discovery={"max_models_listed": 4})
    async with running_client(settings) as client:
        await seed_store(client.app.state.runtime.store, DEFAULT_MODEL_DIR / "heads")
        r = await client.put(
            "/v1/tasks/acme-a", files={"file": ("h", head_files["acme"])}, headers=auth("acme")
        )
        assert r.status_code == 200
        first = (await client.get("/v1/models", headers=auth("acme"))).json()
        assert len(first["data"]) == 4 and first["has_more"] is True
        assert first["total"] == 2 + len(SHIPPED)
        seen, offset = [], 0
        while True:
            page = (
                await client.get(f"/v1/models?offset={offset}&limit=3", headers=auth("acme"))
            ).json()
            seen += [m["id"] for m in page["data"]]
            offset += 3
            if not page["has_more"]:
                break
        assert seen == ["base", *sorted(["acme-a", *SHIPPED])]
        big = await client.get("/v1/models?limit=100000", headers=auth("acme"))
        assert len(big.json()["data"]) == 4  # the cap holds whatever limit is asked


@pytest.mark.parametrize(
    "query", ["offset=-1", "limit=0", "offset=x", "limit=1e9", "offset=" + "9" * 30]
)
async def test_hostile_models_queries_get_4xx(catalog, query):
    r = await catalog.get(f"/v1/models?{query}", headers=auth("acme"))
    assert 400 <= r.status_code < 500 and "error" in r.json()


async def test_hostile_model_ids_get_4xx(catalog):
    for model_id in ("x" * 200, "..%2F..%2Fetc", "%00", "UPPER CASE"):
        r = await catalog.get(f"/v1/models/{model_id}", headers=auth("acme"))
        assert 400 <= r.status_code < 500, (model_id, r.status_code)
