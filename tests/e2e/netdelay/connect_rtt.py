#!/usr/bin/env python3
"""connect_rtt.py HOST: the smallest of 5 TCP connect times to port 1 of HOST (closed: refused), in ms.

A round trip measured by the kernel's SYN / RST exchange, with no server needed: what the e2e tests
use to check a link's delay (tests/e2e/gate/lib.sh, tests/e2e/netdelay/netdelay.sh). Prints
"error <why>" instead when a connect fails otherwise (a timeout: the link drops packets).
"""
import socket
import sys
import time

best = None
for _ in range(5):
    t = time.monotonic()
    try:
        socket.create_connection((sys.argv[1], 1), timeout=5).close()
    except ConnectionRefusedError:
        pass
    except OSError as e:
        print(f"error {e}")
        sys.exit(0)
    ms = (time.monotonic() - t) * 1000
    best = ms if best is None else min(best, ms)
print(f"{best:.1f}")
