"""What tenants upload as files, fuzzed over real HTTP: dataset archives and head files with
their metadata. Every input gets a typed 4xx with a code, or a 200; never a 500, and what
was refused is never stored."""

from __future__ import annotations

import io
import json
import struct
import zipfile

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters_store.disk_store import DiskStore
from tests.helpers import DEFAULT_MODEL_DIR, live_server, make_settings
from tests.server.jobs.archives import fsdd_zip, upload

EXAMPLES = 60
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
HEAD = DiskStore(DEFAULT_MODEL_DIR / "heads").get_bytes("fsdd-george")


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    with live_server(make_settings(tmp_path_factory.mktemp("untrusted"))) as url:
        yield url


@pytest.fixture(scope="module")
def archive(fsdd_root) -> bytes:
    return fsdd_zip(fsdd_root, "theo", range(0, 1))  # 10 real recordings + manifest


def _typed(r: httpx.Response) -> None:
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.json()["error"]["code"], r.text


def _with_head_metadata(edit) -> bytes:
    """The real head file, its safetensors header's head metadata changed by `edit`."""
    size = struct.unpack("<Q", HEAD[:8])[0]
    header = json.loads(HEAD[8 : 8 + size])
    meta = json.loads(header["__metadata__"]["hra_head"])
    header["__metadata__"]["hra_head"] = edit(meta)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + HEAD[8 + size :]


def test_a_corrupt_compressed_member_is_a_typed_400_without_library_text(base_url, archive):
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        info = z.infolist()[0]
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    broken = bytearray(archive)
    broken[start : start + 64] = bytes(64)  # zeroes where the deflate stream was
    with httpx.Client(base_url=base_url, timeout=60) as client:
        r = client.post("/v1/files", **upload(bytes(broken)))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_dataset"
    assert "Error -3" not in r.text and "zlib" not in r.text  # no raw library text


def test_head_metadata_with_an_unpaired_surrogate_is_refused_and_nothing_is_stored(base_url):
    with httpx.Client(base_url=base_url, timeout=60) as client:
        r = client.put(
            "/v1/tasks/surrogate-put",
            files={"file": ("h.safetensors", HEAD)},
            data={"metadata": '{"note": "\\ud800"}'},
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request", r.text
        in_file = _with_head_metadata(lambda m: json.dumps({**m, "description": "\ud800"}))
        r = client.put("/v1/tasks/surrogate-file", files={"file": ("h.safetensors", in_file)})
        assert r.status_code == 422 and r.json()["error"]["code"] == "head_rejected", r.text
        for task in ("surrogate-put", "surrogate-file"):
            assert client.get(f"/v1/tasks/{task}").status_code == 404
        assert client.get("/v1/tasks").status_code == 200


@FUZZ
@given(data=st.data())
def test_any_mangled_dataset_archive_gets_a_typed_answer(base_url, archive, data):
    mangled = bytearray(archive)
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(mangled) - 1))
        mangled[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(mangled)))
    candidate = bytes(mangled[:cut] if data.draw(st.booleans()) else mangled)
    with httpx.Client(base_url=base_url, timeout=60) as client:
        _typed(client.post("/v1/files", **upload(candidate)))


JSON = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@FUZZ
@given(metadata=JSON, in_file=JSON, field=st.sampled_from(["description", "owner", "extra", "x"]))
def test_any_head_metadata_gets_a_typed_answer_and_what_is_stored_reads_back(
    base_url, metadata, in_file, field
):
    head = _with_head_metadata(lambda m: json.dumps({**m, field: in_file}))
    with httpx.Client(base_url=base_url, timeout=60) as client:
        r = client.put(
            "/v1/tasks/fuzzed-head",
            files={"file": ("h.safetensors", head)},
            data={"metadata": json.dumps(metadata)},
        )
        assert r.status_code < 500, (r.text, metadata, in_file, field)
        _typed(r)
        if r.status_code == 200:  # stored: it reads back, listed and inspected
            _typed(client.get("/v1/tasks/fuzzed-head"))
            assert client.get("/v1/tasks/fuzzed-head").status_code == 200
            assert client.get("/v1/tasks").status_code == 200


@pytest.mark.parametrize("metadata", [["a", "b"], "text", 7, {"hra_head": 5}])
def test_a_head_file_whose_safetensors_metadata_is_not_an_object_of_strings_is_refused(
    base_url, metadata
):
    size = struct.unpack("<Q", HEAD[:8])[0]
    header = json.loads(HEAD[8 : 8 + size])
    header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    head = struct.pack("<Q", len(raw)) + raw + HEAD[8 + size :]
    with httpx.Client(base_url=base_url, timeout=60) as client:
        r = client.put("/v1/tasks/odd-metadata", files={"file": ("h.safetensors", head)})
    assert r.status_code == 422 and r.json()["error"]["code"] == "head_rejected", r.text
