#!/usr/bin/env python3
"""Clients pipeline, another waits: fairness between a worker's connections (bench/run.py's
`pipeline`).

`--pipelines` connections each keep `--batch` requests in flight (a new batch once the previous
one is answered; four, so every worker of two has some), while a probe on another connection
sends one request every `--every` seconds and times its answer. The probe's latency is what any
other client waits while pipelines are served; the pipelines' req/s is what fairness costs them.

One thread and select(), as openloop.py. Both clients ask for the same path; its responses must
not contain "HTTP/1.1 " in their bodies (counted to find where each response starts). Prints
one JSON object.

    python bench/pipeline.py --port 8000 --path /hello/ --batch 1000 --duration 10
"""

from __future__ import annotations

import argparse
import json
import resource
import select
import socket
import time

MARK = b"HTTP/1.1 "
#: Seconds without a byte from the server, with requests in flight, after which it has failed.
STALL = 10.0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(port: int, path: str, pipelines: int, batch: int, every: float, duration: float) -> dict:
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    pipers = [socket.create_connection(("127.0.0.1", port)) for _ in range(pipelines)]
    probe = socket.create_connection(("127.0.0.1", port))
    for sock in (*pipers, probe):  # warm them up: a connection's first request is not measured
        sock.sendall(request)
        while MARK not in sock.recv(65536):
            pass
    cpu0 = cpu_seconds()
    start = time.monotonic()
    end = start + duration
    outstanding = dict.fromkeys(pipers, 0)  # each pipeline's requests not answered yet
    tails = dict.fromkeys(pipers, b"")  # the last bytes read, so a split MARK counts once
    answered = 0
    next_probe = start + every
    probe_sent = None
    latencies: list[float] = []
    while True:
        now = time.monotonic()
        for piper, left in outstanding.items():
            if not left and now < end:
                piper.sendall(request * batch)  # ~40 bytes each: the kernel takes it at once
                outstanding[piper] = batch
        if now >= end and not any(outstanding.values()):
            break
        if probe_sent is None and next_probe <= now < end:
            probe.sendall(request)
            probe_sent = now
        wait = STALL if probe_sent is not None or now >= end else max(next_probe - now, 0.0)
        readable, _, _ = select.select([*pipers, probe], [], [], wait)
        if not readable and wait == STALL:
            raise TimeoutError(f"no answer for {STALL:g} s with requests in flight")
        for sock in readable:
            data = sock.recv(1 << 20)
            if not data:
                raise ConnectionError("the server closed a connection")
            if sock is probe:
                if MARK in data and probe_sent is not None:  # a response starts: the probe's
                    latencies.append(time.monotonic() - probe_sent)
                    probe_sent = None
                    next_probe = time.monotonic() + every
                continue
            seen = tails[sock] + data
            count = seen.count(MARK) - tails[sock].count(MARK)
            tails[sock] = seen[-(len(MARK) - 1) :]
            outstanding[sock] -= count
            answered += count
    elapsed = time.monotonic() - start
    for sock in (*pipers, probe):
        sock.close()
    latencies.sort()

    def quantile(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return {
        "pipelined_rps": answered / elapsed,
        "probes": len(latencies),
        "probe_p50_ms": quantile(0.5),
        "probe_p99_ms": quantile(0.99),
        "probe_max_ms": latencies[-1] * 1000,
        "requests": answered + len(latencies),
        "generator_cpu_s": cpu_seconds() - cpu0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/hello/")
    parser.add_argument("--pipelines", type=int, default=4, help="pipelining connections")
    parser.add_argument("--batch", type=int, default=1000, help="pipelined requests per batch")
    parser.add_argument("--every", type=float, default=0.005, help="seconds between probes")
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    numbers = run(args.port, args.path, args.pipelines, args.batch, args.every, args.duration)
    print(json.dumps(numbers))


if __name__ == "__main__":
    main()
