"""The Cookbook echo server with HMAC client authentication, single-threaded.

Written for connauth's benchmark from the recipe's description: one accept
loop that, for each client in turn, sends 32 random bytes, reads the HMAC
digest, compares it in constant time, then echoes until the client closes.
A client that stalls holds up every other client (until the timeout): that
is the recipe's weakness that serve() removes.

usage: CONNAUTH_SECRET=... recipe_echo_server.py [PORT [TIMEOUT_S]]
  Listens on 127.0.0.1 (PORT 0 or absent: an OS-chosen port), prints
  "port N" and serves until SIGTERM/SIGINT. HMAC-SHA-256.

Differences from the recipe, for a fair comparison: the listen backlog is
socket.SOMAXCONN instead of 5, and each client has a socket timeout
(default 10 s, like serve()'s handshake deadline) so a silent one cannot
block the loop forever.
"""
import hmac
import os
import signal
import socket
import sys


def recv_exactly(sock, count):
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            break
        data += chunk
    return data


def server_authenticate(sock, key):
    challenge = os.urandom(32)
    sock.sendall(challenge)
    expected = hmac.new(key, challenge, "sha256").digest()
    reply = recv_exactly(sock, len(expected))
    return hmac.compare_digest(expected, reply)


def serve_client(sock, key):
    if not server_authenticate(sock, key):
        return
    while True:
        data = sock.recv(8192)
        if not data:
            return
        sock.sendall(data)


def main():
    key = os.environ["CONNAUTH_SECRET"].encode("utf-8")
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    timeout = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(socket.SOMAXCONN)
    print("port %d" % listener.getsockname()[1], flush=True)
    try:
        while True:
            sock, _addr = listener.accept()
            sock.settimeout(timeout)
            try:
                serve_client(sock, key)
            except OSError:
                pass  # timeout, reset: next client
            finally:
                sock.close()
    except KeyboardInterrupt:
        pass
    finally:
        listener.close()


if __name__ == "__main__":
    main()
