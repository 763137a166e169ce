"""Tiny raw-socket probes of the Kafka and Redis wire protocols.

Readiness means "answers a real request", not "a port is open". These probes
speak just enough of each protocol to ask one question with a hard deadline and
no client-library retries, so a wrong address fails in seconds with a clear
reason (setup notebook 00, ``edalab doctor``).
"""

from __future__ import annotations

import socket
import struct

__all__ = ["kafka_api_versions", "kafka_metadata_brokers", "redis_ping", "parse_host_port"]


def parse_host_port(address: str, default_port: int) -> tuple[str, int]:
    """Split ``"host:port"`` (or ``"[::1]:port"``, or a bare host)."""
    address = address.strip()
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = rest.lstrip(":") or str(default_port)
    elif address.count(":") == 1:
        host, port = address.split(":")
    else:
        host, port = address, str(default_port)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{address!r} has no valid port")
    return host, int(port)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the server closed the connection mid-answer")
        buf += chunk
    return buf


def _kafka_request(host: str, port: int, api_key: int, api_version: int, body: bytes,
                   timeout_s: float) -> bytes:
    client_id = b"edalab-probe"
    header = struct.pack(">hhih", api_key, api_version, 7, len(client_id)) + client_id
    payload = header + body
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.settimeout(timeout_s)
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        if not 0 < size < 16 * 1024 * 1024:
            raise ConnectionError("the answer is not a Kafka response")
        data = _recv_exact(sock, size)
    (correlation_id,) = struct.unpack(">i", data[:4])
    if correlation_id != 7:
        raise ConnectionError("the answer is not a Kafka response")
    return data[4:]


def kafka_api_versions(host: str, port: int, timeout_s: float = 2.0) -> int:
    """Send ApiVersions v0; return how many APIs the broker lists. Raises OSError."""
    data = _kafka_request(host, port, api_key=18, api_version=0, body=b"", timeout_s=timeout_s)
    error_code, count = struct.unpack(">hi", data[:6])
    if error_code != 0 or count <= 0:
        raise ConnectionError(f"ApiVersions answered error code {error_code}")
    return count


def kafka_metadata_brokers(host: str, port: int, timeout_s: float = 2.0) -> list[tuple[int, str, int]]:
    """Send Metadata v0 for no topics; return the brokers it advertises (id, host, port).

    The advertised addresses are what clients connect to after bootstrap; a
    broker that advertises a container name (``kafka:19092``) is the classic
    "works in Docker, hangs on the host" mistake.
    """
    body = struct.pack(">i", 0)  # an empty topic list: v0 then means "all topics"
    data = _kafka_request(host, port, api_key=3, api_version=0, body=body, timeout_s=timeout_s)
    (n,) = struct.unpack(">i", data[:4])
    pos, brokers = 4, []
    for _ in range(n):
        node_id, hlen = struct.unpack(">ih", data[pos:pos + 6])
        pos += 6
        bhost = data[pos:pos + hlen].decode()
        pos += hlen
        (bport,) = struct.unpack(">i", data[pos:pos + 4])
        pos += 4
        brokers.append((node_id, bhost, bport))
    return brokers


def redis_ping(host: str, port: int, timeout_s: float = 2.0) -> None:
    """Send PING; raise ConnectionError unless the answer is +PONG (or an AUTH demand)."""
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.settimeout(timeout_s)
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        answer = sock.recv(64)
    if answer.startswith(b"+PONG") or answer.startswith(b"-NOAUTH"):
        return
    raise ConnectionError(f"the answer to PING was {answer[:40]!r}, not +PONG")
