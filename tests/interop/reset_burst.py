"""Connects COUNT sockets to a listener and resets each one, for
tests/hostile/accept_test.ts.

usage:
  reset_burst.py HOST PORT COUNT

Every socket connects first (the kernel completes the handshake and queues
it in the listener's backlog, accepted or not), then each is closed with
SO_LINGER set to (on, 0 s), which sends a RST instead of a FIN: a client
that resets its connection before the server accepted it. Deno cannot set
SO_LINGER, hence this peer. Prints "reset COUNT" when done; exits 1 with
"error <reason>" if a connect fails.
"""
import socket
import struct
import sys


def main():
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(5)
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            sockets.append(sock)
            sock.connect((host, port))
    except OSError as error:
        print(f"error {error}", flush=True)
        sys.exit(1)
    finally:
        for sock in sockets:
            sock.close()
    print(f"reset {count}", flush=True)


if __name__ == "__main__":
    main()
