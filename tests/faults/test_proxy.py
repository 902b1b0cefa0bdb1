"""The breakable TCP proxy of the network-cut scenarios does what the scenarios rely on."""

from __future__ import annotations

import socket

import pytest

from tests.redis_servers import RedisServer

from .proxy import HOST, CutMode, TcpProxy

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(60)]


def answer_to_ping(connection: socket.socket) -> str:
    """``PONG``, ``closed`` (reset or closed by the other end) or ``silent`` (timed out)."""
    try:
        connection.sendall(b"PING\r\n")
        reply = connection.recv(64)
    except TimeoutError:
        return "silent"
    except OSError:
        return "closed"
    return "PONG" if reply == b"+PONG\r\n" else "closed"


def test_the_proxy_forwards_until_cut_and_again_once_restored(redis_server: RedisServer) -> None:
    """Open: PONG; cut: the open connection is dropped; restored: a new one gets PONG."""
    with TcpProxy(redis_server.port) as proxy:
        with socket.create_connection((HOST, proxy.port), timeout=2) as connection:
            assert answer_to_ping(connection) == "PONG"
            proxy.cut(CutMode.REFUSE)
            assert answer_to_ping(connection) == "closed"
        proxy.restore()
        with socket.create_connection((HOST, proxy.port), timeout=2) as connection:
            assert answer_to_ping(connection) == "PONG"


@pytest.mark.parametrize(
    ("mode", "answer"), [(CutMode.REFUSE, "closed"), (CutMode.BLACKHOLE, "silent")]
)
def test_a_cut_proxy_refuses_or_blackholes_new_connections(
    redis_server: RedisServer, mode: CutMode, answer: str
) -> None:
    """Refused: the connection is dropped at once; blackholed: no reply ever comes."""
    with TcpProxy(redis_server.port) as proxy:
        proxy.cut(mode)
        with socket.create_connection((HOST, proxy.port), timeout=1) as connection:
            assert answer_to_ping(connection) == answer


def test_replies_on_open_connections_can_be_lost_while_new_ones_work(
    redis_server: RedisServer,
) -> None:
    """lose_replies: the open connection's request goes unanswered; a new one gets PONG."""
    with (
        TcpProxy(redis_server.port) as proxy,
        socket.create_connection((HOST, proxy.port), timeout=1) as connection,
    ):
        assert answer_to_ping(connection) == "PONG"
        proxy.lose_replies()
        assert answer_to_ping(connection) == "silent"
        with socket.create_connection((HOST, proxy.port), timeout=1) as fresh:
            assert answer_to_ping(fresh) == "PONG"
