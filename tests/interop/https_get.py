"""One HTTPS GET from a chosen source address, for tests/hostile/accept_test.ts.

usage:
  https_get.py SOURCE PORT CAFILE

Connects from SOURCE (an address on loopback such as 127.0.1.5, so that the
server sees a client other than 127.0.0.1; Deno's own clients cannot pick
their source address) to 127.0.0.1:PORT, verifies the server certificate
against CAFILE for the name "localhost", sends "GET / HTTP/1.1" with
"Connection: close" and prints what the server sent until it closed.
Prints "error <reason>" and exits 1 on a failure.
"""
import socket
import ssl
import sys


def main():
    source, port, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    context = ssl.create_default_context(cafile=cafile)
    try:
        raw = socket.create_connection(
            ("127.0.0.1", port), timeout=10, source_address=(source, 0)
        )
        with context.wrap_socket(raw, server_hostname="localhost") as conn:
            conn.sendall(
                b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            )
            response = b""
            while True:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                response += chunk
    except (OSError, ssl.SSLError) as error:
        print(f"error {error}", flush=True)
        sys.exit(1)
    sys.stdout.write(response.decode("utf-8", "replace"))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
