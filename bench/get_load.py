#!/usr/bin/env python3
"""GET requests at a fixed concurrency over keep-alive connections, and the
server's CPU per request from /proc: what a route costs a host when no
webhook is involved (e.g. a 404, or /healthz's key-value and database probes).

    python3 bench/get_load.py PORT PATH REQUESTS CONCURRENCY SERVER_PID

Two warm-up passes first. The driver itself is Python (the GIL caps it at a
few thousand requests per second here), so read the CPU per request, not the
requests per second, as the server's figure.
"""
import http.client
import os
import sys
import threading
import time


def cpu_ticks(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def main():
    port, path, total, concurrency, pid = (
        int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    per_worker = total // concurrency
    statuses = {}
    lock = threading.Lock()

    def worker():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(per_worker):
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            with lock:
                statuses[response.status] = statuses.get(response.status, 0) + 1

    def phase():
        threads = [threading.Thread(target=worker) for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    phase()
    phase()
    statuses.clear()
    ticks, started = cpu_ticks(pid), time.monotonic()
    phase()
    elapsed = time.monotonic() - started
    used_s = (cpu_ticks(pid) - ticks) / os.sysconf("SC_CLK_TCK")
    n = per_worker * concurrency
    print(f"{path}: statuses {statuses}; server CPU {used_s * 1e6 / n:.0f} µs per request; "
          f"{n / elapsed:.0f} req/s (the driver's limit, not the server's)")


if __name__ == "__main__":
    main()
