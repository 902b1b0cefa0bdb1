"""The baseline route of the HTTP scenarios: what a hand-written FastAPI route answering
``202`` with a job JSON costs, without storing or running anything."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel


class DataRequest(BaseModel):
    data: str


def add_bare_route(app: FastAPI, path: str = "/bare/process/{tenant}") -> None:
    """Register ``POST path``: validates a `DataRequest` body, answers the 202 job JSON."""

    @app.post(path, status_code=202)
    async def bare(tenant: str, body: DataRequest) -> JSONResponse:
        job_id = uuid.uuid4()
        now = datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
        job = {
            "id": str(job_id),
            "name": "process",
            "status": "Queued",
            "retryCount": 0,
            "maxRetries": 3,
            "createdAt": now,
            "startedAt": None,
            "completedAt": None,
            "lastUpdatedAt": now,
            "result": None,
            "error": None,
        }
        return JSONResponse(job, status_code=202, headers={"Location": f"/jobs/{job_id}"})

    @app.get("/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}
