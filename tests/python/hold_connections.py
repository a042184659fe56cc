"""Opens idle TCP connections and holds them until stdin closes (or it is killed).

Usage: hold_connections.py COUNT HOST:PORT [HOST:PORT ...]
Connects round-robin over the addresses, sends nothing, prints one JSON line
{"opened": N, "failed": M} once every connect was tried, then waits.
"""

import json
import resource
import socket
import sys


def main():
    count = int(sys.argv[1])
    addrs = []
    for a in sys.argv[2:]:
        host, port = a.rsplit(":", 1)
        addrs.append((host, int(port)))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    held, failed = [], 0
    for i in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(0.5)
        try:
            s.connect(addrs[i % len(addrs)])
            held.append(s)
        except OSError:
            s.close()
            failed += 1
    print(json.dumps({"opened": len(held), "failed": failed}), flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
