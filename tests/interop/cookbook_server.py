"""Server side of the Cookbook HMAC challenge-response, for interop tests.

Written from the recipe's description: send 32 random bytes, read the
client's digest, compare in constant time, then echo one message or close.

usage: cookbook_server.py KEY DIGEST COUNT
  Listens on 127.0.0.1 with an OS-chosen port, prints "port N", serves COUNT
  connections one after the other and prints "accept" or "reject" for each.
  DIGEST is a hashlib name or "default" (hmac.new(key, msg): MD5 on 3.7).
"""
import hmac
import os
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


def server_authenticate(sock, key, digest):
    message = os.urandom(32)
    sock.sendall(message)
    if digest == "default":
        mac = hmac.new(key, message)
    else:
        mac = hmac.new(key, message, digest)
    expected = mac.digest()
    response = recv_exactly(sock, len(expected))
    return hmac.compare_digest(expected, response)


def main():
    key, digest, count = sys.argv[1].encode("utf-8"), sys.argv[2], int(sys.argv[3])
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    listener.settimeout(20)
    print("port %d" % listener.getsockname()[1], flush=True)
    for _ in range(count):
        sock, _addr = listener.accept()
        sock.settimeout(10)
        try:
            if not server_authenticate(sock, key, digest):
                print("reject", flush=True)
                continue
            print("accept", flush=True)
            data = sock.recv(65536)
            if data:
                sock.sendall(data)
        finally:
            sock.close()
    listener.close()


if __name__ == "__main__":
    main()
