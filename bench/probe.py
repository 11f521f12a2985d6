#!/usr/bin/env python3
"""Owns the zero-downtime benchmark's request timeline (stdlib only).

wrk reports totals but not *when* a request failed or stalled. This probe sends one
request at a time (a new connection each, like a browser's first request) through the
proxy every INTERVAL seconds, with a generous timeout, and writes one line per request:

    <epoch start> <latency ms> <HTTP status, or the error's class name>

until it receives SIGTERM or SIGINT. The benchmark merges the slow and failed lines with
its event log, so each anomaly can be tied to a deploy step, a kill or a restart.

Usage: probe.py URL HOST INTERVAL_S TIMEOUT_S OUTPUT_FILE
"""

import http.client
import signal
import sys
import time
import urllib.parse


def main() -> int:
    url, host, interval, timeout, output = sys.argv[1:6]
    interval_s, timeout_s = float(interval), float(timeout)
    parsed = urllib.parse.urlsplit(url)
    stopping = False

    def stop(_signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with open(output, "w", buffering=1) as out:
        while not stopping:
            started = time.time()
            connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout_s)
            try:
                connection.request("GET", parsed.path or "/", headers={"Host": host})
                response = connection.getresponse()
                response.read()
                outcome = str(response.status)
            except Exception as error:  # every failure is a data point, not a crash
                outcome = type(error).__name__
            finally:
                connection.close()
            latency_ms = (time.time() - started) * 1000
            out.write(f"{started:.3f} {latency_ms:.1f} {outcome}\n")
            rest = interval_s - (time.time() - started)
            if rest > 0 and not stopping:
                time.sleep(rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
