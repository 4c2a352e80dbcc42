"""Client side of the Cookbook HMAC challenge-response, for interop tests.

Written from the recipe's description: read the server's challenge, answer
with the raw HMAC digest under the shared key, then send a message and print
the echo.

usage: cookbook_client.py HOST PORT KEY DIGEST [MESSAGE]
  DIGEST is a hashlib name (sha256, sha1, md5, ...) or "default", which calls
  hmac.new(key, msg) with no digestmod (MD5 on Python 3.7 and older).
Exit status: 0 echoed, 3 the server closed the connection (rejected us).
"""
import hmac
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


def client_authenticate(sock, key, digest, challenge_length=32):
    message = recv_exactly(sock, challenge_length)
    if digest == "default":
        mac = hmac.new(key, message)
    else:
        mac = hmac.new(key, message, digest)
    sock.sendall(mac.digest())


def main():
    host, port, key, digest = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    text = sys.argv[5] if len(sys.argv) > 5 else "Hello World"
    sock = socket.create_connection((host, port), timeout=10)
    try:
        client_authenticate(sock, key.encode("utf-8"), digest)
        payload = text.encode("utf-8")
        sock.sendall(payload)
        reply = recv_exactly(sock, len(payload))
        if not reply:
            print("rejected")
            sys.exit(3)
        print(reply.decode("utf-8"))
    finally:
        sock.close()


if __name__ == "__main__":
    main()
