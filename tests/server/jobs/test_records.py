"""Job records: the state machine holds across processes' writes; terminal is final."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from server.errors import UnknownJob
from server.jobs.records import Hyperparameters, JobRecord, JobStore


def new_record(store: JobStore) -> JobRecord:
    record = JobRecord(
        id=JobStore.new_id(),
        owner="acme",
        task_id="acme-x",
        training_file="file-" + "0" * 24,
        validation_file=None,
        hyperparameters=Hyperparameters(steps=3, speeds=(1.0, 1.1)),
        promote="if_better",
        created_at=time.time(),
    )
    return store.create(record)


def test_a_job_moves_only_forward_and_a_terminal_state_never_changes(tmp_path):
    store = JobStore(tmp_path)
    record = new_record(store)
    assert store.get(record.id) == record  # round-trips, tuples included
    assert store.transition(record.id, "succeeded") is None  # queued cannot succeed
    running = store.transition(record.id, "running")
    assert running.status == "running" and running.started_at is not None
    cancelled = store.transition(record.id, "cancelled", error={"code": "cancelled"})
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    for status in ("running", "failed", "succeeded", "queued"):
        assert store.transition(record.id, status) is None
    with pytest.raises(ValueError):
        store.update(record.id, lambda r: replace(r, status="running"))
    assert store.get(record.id).status == "cancelled"


def test_events_append_in_order_in_openais_shape(tmp_path):
    store = JobStore(tmp_path)
    record = new_record(store)
    store.event(record.id, "step 1/3", data={"step": 1})
    events = store.events(record.id)
    assert [e["message"] for e in events] == ["created job for task acme-x", "step 1/3"]
    assert events[1]["object"] == "fine_tuning.job.event" and events[1]["type"] == "metrics"
    assert store.events(record.id, after=1) == events[1:]


@pytest.mark.parametrize("job_id", ["../../etc", "ftjob-" + "g" * 24, "ftjob-1", "x" * 30])
def test_ids_that_are_not_ours_are_unknown_never_paths(tmp_path, job_id):
    with pytest.raises(UnknownJob):
        JobStore(tmp_path).get(job_id)
