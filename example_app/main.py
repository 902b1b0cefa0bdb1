"""An example FastAPI app whose slow work runs as async jobs.

Run it with ``python -m example_app`` (``HOST`` and ``PORT`` pick the address; with
``REDIS_URL`` set, jobs live in Redis and ``python -m async_endpoints worker
example_app.main:endpoints`` can run them in other processes), then::

    curl -i -X POST localhost:8000/api/process-data/acme \\
         -H 'Content-Type: application/json' -d '{"data": "hello"}'
    # 202 Accepted, Location: /jobs/<id>
    curl localhost:8000/jobs/<id>
    curl -X POST localhost:8000/jobs/<id>/cancel
    curl -X POST localhost:8000/api/accounts/42/updates \
         -H 'Content-Type: application/json' -d '{"amount": -5}'   # in order per account
    curl -X POST localhost:8000/api/reports/monthly/2026-11           # a batch, then its join
    curl localhost:8000/batches/<batch id>
    curl localhost:8000/metrics                                          # Prometheus text

and open http://127.0.0.1:8000/dashboard/ in a browser on the same machine.
"""

import asyncio
import os
from ipaddress import IPv4Address, IPv6Address

from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, IPvAnyAddress
from starlette.requests import Request
from starlette.responses import JSONResponse

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    InMemoryJobStore,
    JobSpec,
    JobStatus,
    JobStore,
    JobValidationError,
)

BLOCKED_TENANTS = frozenset({"blocked"})


def make_store() -> JobStore:
    """Redis when ``REDIS_URL`` is set (shared by all instances and workers), else memory."""
    url = os.environ.get("REDIS_URL")
    if not url:
        return InMemoryJobStore()
    try:
        from async_endpoints_redis import RedisJobStore
    except ModuleNotFoundError as exc:  # the "example" extra alone has no Redis client
        raise SystemExit(
            f'REDIS_URL is set but {exc.name} is not installed: pip install -e ".[example,redis]"'
        ) from None
    return RedisJobStore(url)


app = FastAPI(title="async-endpoints example")
endpoints = AsyncEndpoints(
    app, store=make_store(), max_retries=2, queues=("interactive", "default", "batch")
)
endpoints.map_job_details("/jobs/{job_id}")
endpoints.map_job_cancel("/jobs/{job_id}/cancel")
endpoints.map_job_events("/jobs/{job_id}/events")
endpoints.map_batch_details("/batches/{batch_id}")
endpoints.map_metrics("/metrics")

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1"})


def from_this_machine(request: Request) -> bool:
    """The dashboard's gate in this example: requests from this machine only. A real app
    checks its own users here (a session, a role); behind a proxy every request comes
    from the proxy's address, so never rely on this there."""
    return request.client is not None and request.client.host in LOOPBACK_HOSTS


endpoints.map_dashboard("/dashboard", authorize=from_this_machine)


@app.exception_handler(RequestValidationError)
async def refuse_invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 for FastAPI's own routes, without echoing the input (it may be huge, secret, or
    not even representable as JSON, like the infinity ``1e999`` parses to)."""
    errors = [{"loc": e["loc"], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return JSONResponse({"detail": errors}, 422)


# --- ProcessData: a body, a path parameter and a validator ---------------------------------


class DataRequest(BaseModel):
    data: str
    # Bounded, as a real priority is: a number no JSON reader keeps exactly (beyond
    # 2**53) is refused with 422 here, not stored and then refused as a result.
    processing_priority: int = Field(default=1, ge=1, le=10)


class ProcessResult(BaseModel):
    tenant: str
    processed_data: str
    character_count: int
    processing_priority: int


def tenant_refusal(tenant: str) -> JSONResponse | None:
    """A 403 for tenants that may not submit work, None for everyone else."""
    if tenant in BLOCKED_TENANTS:
        return JSONResponse({"detail": f"tenant {tenant!r} may not submit jobs"}, 403)
    return None


def refuse_blocked_tenants(request: Request, body: DataRequest) -> JSONResponse | None:
    """Runs before the job is queued: a response returned here is sent instead of the 202."""
    return tenant_refusal(request.path_params["tenant"])


def tenant_of(request: Request, body: DataRequest) -> str:
    """Each tenant's jobs take turns with the other tenants' (one tenant's backlog never
    holds up another's)."""
    return str(request.path_params["tenant"])


@endpoints.map_async_post(
    "/api/process-data/{tenant}",
    name="ProcessData",
    validator=refuse_blocked_tenants,
    tenant=tenant_of,
)
async def process_data(ctx: AsyncContext[DataRequest]) -> ProcessResult:
    """Upper-case the data (the stand-in for real, slow processing)."""
    return ProcessResult(
        tenant=ctx.route_params["tenant"],
        processed_data=ctx.request.data.upper(),
        character_count=len(ctx.request.data),
        processing_priority=ctx.request.processing_priority,
    )


# --- GeoLookup: a validated field and an awaited call ---------------------------------------


class GeoLookupRequest(BaseModel):
    ip_address: IPvAnyAddress


class GeoLocation(BaseModel):
    ip_address: str
    country: str
    city: str


KNOWN_ADDRESSES = {
    "8.8.8.8": ("United States", "Mountain View"),
    "1.1.1.1": ("Australia", "Sydney"),
}


async def lookup(address: IPv4Address | IPv6Address) -> tuple[str, str]:
    """A pretend geo-IP service: a short wait, then a tiny table."""
    await asyncio.sleep(0.05)
    if address.is_private or address.is_loopback:
        return ("Private network", "-")
    return KNOWN_ADDRESSES.get(str(address), ("Unknown", "Unknown"))


@endpoints.map_async_post("/api/geo-lookup", name="GeoLookup", queue="interactive")
async def geo_lookup(ctx: AsyncContext[GeoLookupRequest]) -> GeoLocation:
    """Locate an IP address."""
    country, city = await lookup(ctx.request.ip_address)
    return GeoLocation(ip_address=str(ctx.request.ip_address), country=country, city=city)


# --- NightlyReport: no body; reads the query string and a header ---------------------------


class NightlyReport(BaseModel):
    report_date: str
    requested_by: str
    job_id: str


@endpoints.map_async_post("/api/reports/nightly", name="NightlyReport")
async def nightly_report(ctx: AsyncContext) -> NightlyReport:
    """Build the nightly report for ``?date=`` (default: today)."""
    return NightlyReport(
        report_date=ctx.query_params.get("date", "today"),
        requested_by=ctx.headers.get("x-requested-by", "anonymous"),
        job_id=str(ctx.job_id),
    )


# --- Reminder: a delayed job in a low-priority queue, cancellable until it runs -----------


class ReminderRequest(BaseModel):
    text: str
    in_seconds: float = 60.0


class Reminder(BaseModel):
    text: str


def reminder_delay(request: Request, body: ReminderRequest) -> float:
    """Each POST picks its own delay: the job is Scheduled until then."""
    return body.in_seconds


@endpoints.map_async_post(
    "/api/reminders", name="Reminder", queue="batch", delay=reminder_delay, max_retries=0
)
async def reminder(ctx: AsyncContext[ReminderRequest]) -> Reminder:
    """Deliver the reminder (here: hand its text back)."""
    return Reminder(text=ctx.request.text)


# --- Cleanup: a cron schedule, one job a night however many instances run ------------------


@endpoints.cron("0 3 * * *", name="NightlyCleanup", timezone="Europe/Berlin", queue="batch")
async def nightly_cleanup(ctx: AsyncContext[None]) -> dict[str, str]:
    """Runs at 03:00 Berlin time (listed on the dashboard's Schedules page)."""
    return {"cleaned": "nothing to clean in this example"}


# --- The programmatic API: start a job, then wait for its result ---------------------------


@app.post("/api/process-data-sync/{tenant}", response_model=ProcessResult)
async def process_data_sync(tenant: str, body: DataRequest) -> ProcessResult:
    """The same job as ProcessData, answered synchronously once it has run."""
    if tenant_refusal(tenant) is not None:
        raise HTTPException(403, f"tenant {tenant!r} may not submit jobs")
    try:
        job = await endpoints.submit("ProcessData", body, route_params={"tenant": tenant})
    except JobValidationError as exc:  # text FastAPI reads but no worker could (a lone surrogate)
        raise HTTPException(422, exc.errors) from None
    try:
        job = await endpoints.wait_for(job.id, timeout=10)
    except TimeoutError:
        raise HTTPException(504, f"job {job.id} is still running; see /jobs/{job.id}") from None
    if job.status is not JobStatus.COMPLETED:
        raise HTTPException(502, f"job {job.id} ended {job.status}")
    return ProcessResult.model_validate(job.result)


# --- AccountUpdate: jobs of one account run one at a time, in the order they came ---------


class AccountUpdateRequest(BaseModel):
    amount: int


class AccountUpdate(BaseModel):
    account: str
    amount: int


def account_of(request: Request, body: AccountUpdateRequest) -> str:
    """The partition key: the account in the path."""
    return f"account:{request.path_params['account']}"


@endpoints.map_async_post(
    "/api/accounts/{account}/updates", name="AccountUpdate", partition_key=account_of
)
async def account_update(ctx: AsyncContext[AccountUpdateRequest]) -> AccountUpdate:
    """Apply one update (here: echo it); never beside another update of the account."""
    return AccountUpdate(account=ctx.route_params["account"], amount=ctx.request.amount)


# --- MonthlyReport: a batch of region summaries, then one job that joins them --------------

REGIONS = ("north", "south", "east", "west")


class RegionRequest(BaseModel):
    month: str
    region: str


class MonthRequest(BaseModel):
    month: str


async def summarise_region(ctx: AsyncContext[RegionRequest]) -> dict[str, str]:
    """One region's part of the report."""
    return {"region": ctx.request.region, "month": ctx.request.month}


async def assemble_report(ctx: AsyncContext[MonthRequest]) -> dict[str, object]:
    """Runs once every region is done: reads the parts from the batch."""
    done, cursor = [], None
    while True:  # a filtered page may come back short: follow the cursor to the end
        page = await endpoints.list_jobs(
            batch_id=ctx.batch_id, status="Completed", limit=100, cursor=cursor
        )
        done += page.jobs
        if (cursor := page.next_cursor) is None:
            break
    parts = sorted(job.result["region"] for job in done if job.name == "summarise_region")
    return {"month": ctx.request.month, "regions": parts}


endpoints.add_handler(summarise_region, queue="batch")
endpoints.add_handler(assemble_report, queue="batch")


class BatchAccepted(BaseModel):
    """The answer to a batch's submission, camelCase as the job and batch JSON are."""

    model_config = ConfigDict(populate_by_name=True)

    batch_id: str = Field(alias="batchId")
    location: str


@app.post("/api/reports/monthly/{month}", status_code=202, response_model=BatchAccepted)
async def monthly_report(month: str) -> BatchAccepted:
    """Fan out one job per region, then fan in: the report is assembled exactly once."""
    batch = await endpoints.submit_batch(
        [JobSpec("summarise_region", {"month": month, "region": r}) for r in REGIONS],
        continue_with=[JobSpec("assemble_report", {"month": month})],
    )
    return BatchAccepted(batch_id=str(batch.id), location=f"/batches/{batch.id}")
