"""Holds silent sockets against a server from many loopback source
addresses, for tests/hostile/server_flood_test.ts.

usage:
  silent_flood.py HOST PORT ADDRESSES PER_ADDRESS SECONDS [FIRST]

Opens ADDRESSES x PER_ADDRESS TCP connections to HOST:PORT, each socket
bound to its source address before it connects: FIRST (default 127.0.1.1:
any 127.0.0.0/8 address is a distinct source on Linux's loopback), the next
address, and so on. A socket never sends a byte; it reads and discards what
the server sends (a challenge) and, once the server closes or resets it,
is closed and opened again at once. Deno cannot bind a client socket's
source address, hence this peer.

Prints one JSON line when every socket has connected once (or after 10 s):
  {"ready": true, "held": N, "opened": N, "closed": N}
and one more when it stops: after SECONDS, when its standard input closes,
or after 200000 connects in all (every loop is bounded):
  {"done": true, "held": N, "opened": N, "closed": N, "errors": N}
"""
import errno
import ipaddress
import json
import selectors
import socket
import sys
import time

MAX_CONNECTS = 200_000


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    addresses, per_address = int(sys.argv[3]), int(sys.argv[4])
    seconds = float(sys.argv[5])
    first = ipaddress.IPv4Address(sys.argv[6] if len(sys.argv) > 6 else "127.0.1.1")
    sources = [str(first + i) for i in range(addresses)]
    selector = selectors.DefaultSelector()
    selector.register(sys.stdin, selectors.EVENT_READ, "stdin")
    stats = {"held": 0, "opened": 0, "closed": 0, "errors": 0}
    connects = 0

    def open_one(source):
        nonlocal connects
        connects += 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.bind((source, 0))
        code = sock.connect_ex((host, port))
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            stats["errors"] += 1
            return False
        selector.register(sock, selectors.EVENT_WRITE, ["connecting", source])
        return True

    for _ in range(per_address):
        for source in sources:
            open_one(source)
    start = time.monotonic()
    ready = False
    ever = 0
    stop = start + seconds
    while time.monotonic() < stop and connects < MAX_CONNECTS:
        if not ready and (ever >= addresses * per_address or time.monotonic() - start > 10):
            ready = True
            print(json.dumps({"ready": True, **stats}), flush=True)
        for key, _ in selector.select(timeout=0.05):
            if key.data == "stdin":
                if not sys.stdin.buffer.read1(4096):
                    stop = 0
                continue
            sock, (state, source) = key.fileobj, key.data
            if state == "connecting":
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code != 0:
                    selector.unregister(sock)
                    sock.close()
                    stats["errors"] += 1
                    open_one(source)
                    continue
                stats["held"] += 1
                stats["opened"] += 1
                ever += 1
                selector.modify(sock, selectors.EVENT_READ, ["held", source])
                continue
            try:
                data = sock.recv(4096)
            except (ConnectionResetError, BlockingIOError, OSError):
                data = b""
            if data:
                continue  # the challenge: never answered
            selector.unregister(sock)
            sock.close()
            stats["held"] -= 1
            stats["closed"] += 1
            open_one(source)
    for key in list(selector.get_map().values()):
        if key.data != "stdin":
            key.fileobj.close()
    print(json.dumps({"done": True, **stats}), flush=True)


if __name__ == "__main__":
    main()
