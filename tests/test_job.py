"""The job record and its wire form."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from async_endpoints import Job, JobError, JobRequest, JobStatus
from async_endpoints._job import format_time, parse_job_id, parse_time

CREATED = datetime(2026, 11, 23, 10, 30, 0, 123456, tzinfo=UTC)


def make_job(**changes: object) -> Job:
    job = Job(
        id=uuid.UUID("5b7e0e4a-8f8b-4c8a-9f1f-8d8f8e8f8e8f"),
        name="ProcessData",
        status=JobStatus.QUEUED,
        retry_count=0,
        max_retries=3,
        created_at=CREATED,
        started_at=None,
        completed_at=None,
        last_updated_at=CREATED,
        request=JobRequest(body="{}", headers=(("x-secret-ish", "v"),)),
    )
    return job.replace(**changes)


def test_job_json_has_exactly_the_wire_fields_in_camel_case() -> None:
    """The job JSON is the .NET library's eleven camelCase fields, Z-suffixed times, plus
    the fields of Part 2 (``queue``, ``runAt``; the reserved ones null)."""
    assert make_job().to_json() == {
        "id": "5b7e0e4a-8f8b-4c8a-9f1f-8d8f8e8f8e8f",
        "name": "ProcessData",
        "status": "Queued",
        "retryCount": 0,
        "maxRetries": 3,
        "createdAt": "2026-11-23T10:30:00.123Z",
        "startedAt": None,
        "completedAt": None,
        "lastUpdatedAt": "2026-11-23T10:30:00.123Z",
        "result": None,
        "error": None,
        "queue": "default",
        "runAt": None,
        "partitionKey": None,
        "tenant": None,
        "batchId": None,
        "progress": None,
        "webhook": None,
    }


def test_job_json_never_contains_the_captured_request() -> None:
    """Headers and body are for the handler only, never on the wire."""
    text = str(make_job().to_json())
    assert "x-secret-ish" not in text and "request" not in text


def test_error_json_has_message_and_type_and_a_traceback_only_when_kept() -> None:
    """No stack trace leaks unless one was recorded on purpose."""
    assert make_job(error=JobError("boom", "ValueError")).to_json()["error"] == {
        "message": "boom",
        "type": "ValueError",
    }
    kept = JobError("boom", "ValueError", "Traceback ...")
    assert JobError.from_json(kept.to_json()) == kept


def test_times_are_written_in_utc_whatever_their_zone() -> None:
    """An aware time in another zone is converted to UTC."""
    moment = datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert format_time(moment) == "2026-01-01T10:00:00.000Z"
    assert parse_time("2026-01-01T10:00:00.000Z") == datetime(2026, 1, 1, 10, tzinfo=UTC)


def test_status_sets_classify_every_status() -> None:
    """Each status is exactly one of waiting, in progress or terminal."""
    for status in JobStatus:
        kinds = [status.is_waiting, status is JobStatus.IN_PROGRESS, status.is_terminal]
        assert kinds.count(True) == 1, status


def test_parse_job_id_never_raises() -> None:
    """Malformed ids become None; real UUIDs parse in any accepted spelling."""
    job_id = uuid.uuid4()
    assert parse_job_id(str(job_id).upper()) == job_id
    for bad in ["", "nope", "../../etc/passwd", "x" * 10_000, None, 42]:
        assert parse_job_id(bad) is None


def test_a_jobs_error_reads_as_its_json_form_too() -> None:
    """API.md gives ``error`` as ``{"message": str, "type": str}``: the Python side reads
    so too (``job.error["type"]``, equal to that dict) besides its attributes; the stack
    trace is a key only when it was kept."""
    error = JobError("boom", "ValueError")
    assert (
        (error["message"], error["type"]) == (error.message, error.type) == ("boom", "ValueError")
    )
    assert error == {"message": "boom", "type": "ValueError"} and dict(error) == error.to_json()
    assert "traceback" not in error and error.get("traceback") is None
    kept = JobError("boom", "ValueError", "Traceback ...")
    assert kept["traceback"] == "Traceback ..." and len(kept) == 3
    assert kept != error and error == JobError("boom", "ValueError")
    assert hash(error) == hash(JobError("boom", "ValueError"))
    with pytest.raises(KeyError):
        error["stack"]
