#!/usr/bin/env python3
"""Open-loop load over a keep-alive pool, as a load balancer sends it (bench/run.py's `mix`).

Requests arrive at random (Poisson, `--rate` per second) whatever the server does; each goes out
on an idle connection of a pool of `--connections` keep-alive connections (opened and warmed up
before the measurement, then used least recently used first, as a balancer spreads its traffic),
or waits for one to become idle. A fraction `--slow` of them ask for the slow path. Latency runs
from the request's scheduled arrival, so time spent waiting for a connection, or for a worker
busy with another request, is counted; so is this generator's own lateness, which it reports
(`lag`: scheduled arrival to send, for requests that found an idle connection).

One thread and select(): select() takes a microsecond timeout (epoll's is in milliseconds, which
would make every arrival up to 1 ms late), and one thread costs the two-core machine least; a
thread per connection would spend its CPU on the GIL instead. Prints one JSON object.

    python bench/openloop.py --port 8000 --rate 400 --connections 32 --duration 30
"""

from __future__ import annotations

import argparse
import json
import random
import re
import resource
import select
import socket
import time
from collections import deque

CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.I)


class Client:
    """One keep-alive connection: at most one request in flight."""

    __slots__ = ("sock", "buffer", "scheduled", "sent", "slow")

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.scheduled = 0.0
        self.sent = 0.0
        self.slow = False

    def response_done(self) -> bool | None:
        """True once a whole response is buffered (and drops it), None if the server closed."""
        data = self.sock.recv(65536)
        if not data:
            return None
        self.buffer += data
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return False
        match = CONTENT_LENGTH.search(self.buffer, 0, head_end + 2)
        size = head_end + 4 + (int(match.group(1)) if match else 0)
        if len(self.buffer) < size:
            return False
        self.buffer = self.buffer[size:]
        return True


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


def run(args: argparse.Namespace) -> dict:
    fast = f"GET {args.fast_path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
    slow = f"GET {args.slow_path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
    clients = [Client(args.port) for _ in range(args.connections)]
    for client in clients:  # warm up: every connection accepted and served once
        client.sock.sendall(fast)
        while not client.response_done():
            pass
    by_fd = {client.sock.fileno(): client for client in clients}
    idle: deque[Client] = deque(clients)
    waiting: deque[tuple[float, bool]] = deque()  # arrivals with no idle connection yet
    busy: set[int] = set()
    fast_ms: list[float] = []
    slow_ms: list[float] = []
    lag_ms: list[float] = []
    errors = 0
    rng = random.Random(args.seed)
    clock = time.perf_counter
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    start = clock()
    end = start + args.duration
    arrival = start + rng.expovariate(args.rate)

    def send(client: Client, scheduled: float, is_slow: bool) -> None:
        client.scheduled, client.slow = scheduled, is_slow
        client.sent = clock()
        client.sock.sendall(slow if is_slow else fast)
        busy.add(client.sock.fileno())

    while arrival < end or busy:
        now = clock()
        timeout = max(arrival - now, 0.0) if arrival < end else 1.0
        readable, _, _ = select.select(list(busy), [], [], timeout) if busy else ([], [], [])
        if not busy and timeout:
            time.sleep(timeout)  # nothing in flight: select() with no fds cannot wait here
        for fd in readable:
            client = by_fd[fd]
            done = client.response_done()
            if done is False:
                continue
            busy.discard(fd)
            if done is None:
                errors += 1
                continue  # a closed connection leaves the pool
            (slow_ms if client.slow else fast_ms).append((clock() - client.scheduled) * 1000)
            if waiting:
                send(client, *waiting.popleft())
            else:
                idle.append(client)
        now = clock()
        while arrival <= now and arrival < end:
            is_slow = rng.random() < args.slow
            if idle:
                send(idle.popleft(), arrival, is_slow)
                lag_ms.append((clock() - arrival) * 1000)
            else:
                waiting.append((arrival, is_slow))
            arrival += rng.expovariate(args.rate)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    elapsed = clock() - start
    return {
        "requests": len(fast_ms) + len(slow_ms),
        "rate": (len(fast_ms) + len(slow_ms)) / elapsed,
        "errors": errors + len(waiting),
        "fast_p50_ms": percentile(fast_ms, 50),
        "fast_p99_ms": percentile(fast_ms, 99),
        "fast_p999_ms": percentile(fast_ms, 99.9),
        "fast_max_ms": max(fast_ms, default=0.0),
        "slow_p50_ms": percentile(slow_ms, 50),
        "slow_requests": len(slow_ms),
        "lag_p99_ms": percentile(lag_ms, 99),
        "lag_p999_ms": percentile(lag_ms, 99.9),
        "generator_cpu_s": cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime,
        "elapsed_s": elapsed,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rate", type=float, default=400.0, help="arrivals per second (400)")
    p.add_argument("--connections", type=int, default=32, help="keep-alive pool size (32)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of arrivals (30)")
    p.add_argument("--slow", type=float, default=0.01, help="fraction to the slow path (0.01)")
    p.add_argument("--fast-path", default="/hello/")
    p.add_argument("--slow-path", default="/slow/?s=0.1")
    p.add_argument("--seed", type=int, default=15)
    print(json.dumps(run(p.parse_args())))


if __name__ == "__main__":
    main()
