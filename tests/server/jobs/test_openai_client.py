"""OpenAI's own Python client drives the dataset and job endpoints unchanged."""

from __future__ import annotations

import openai
import pytest

from server.config import JobSettings
from tests.helpers import live_server, make_settings
from tests.server.jobs.archives import fsdd_zip

pytestmark = pytest.mark.slow  # starts a worker (the forkserver imports torch once)


def test_openai_client_uploads_a_dataset_and_creates_lists_and_cancels_a_job(tmp_path, fsdd_root):
    settings = make_settings(
        tmp_path, state_dir=tmp_path / "state", jobs=JobSettings(local_workers=1)
    )
    with live_server(settings) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        uploaded = client.files.create(
            file=("theo.zip", fsdd_zip(fsdd_root, "theo", range(0, 1))), purpose="fine-tune"
        )
        assert uploaded.id.startswith("file-") and uploaded.purpose == "fine-tune"
        assert client.files.retrieve(uploaded.id).bytes == uploaded.bytes
        job = client.fine_tuning.jobs.create(
            model="client-theo",
            training_file=uploaded.id,
            hyperparameters={"steps": 2000},
            extra_body={"promote": "always"},
        )
        assert job.status == "queued" and job.model == "client-theo"
        assert [j.id for j in client.fine_tuning.jobs.list()] == [job.id]
        cancelled = client.fine_tuning.jobs.cancel(job.id)
        assert cancelled.status in ("cancelled", "queued", "running")
        events = client.fine_tuning.jobs.list_events(job.id)
        assert events.data[-1].message == "created job for task client-theo"
        with pytest.raises(openai.NotFoundError):
            client.fine_tuning.jobs.retrieve("ftjob-" + "0" * 24)
        with pytest.raises(openai.BadRequestError):
            client.fine_tuning.jobs.create(
                model="client-theo", training_file=uploaded.id, hyperparameters={"n_epochs": 3}
            )
        assert client.files.delete(uploaded.id).deleted
