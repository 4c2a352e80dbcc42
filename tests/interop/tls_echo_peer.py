"""A TLS echo peer on Python's ssl module, for tests/tls_test.ts and the TLS bench.

usage:
  tls_echo_peer.py client PORT HOSTNAME CAFILE [--cert F --key F]
      Connects to 127.0.0.1:PORT, verifies the server against CAFILE and
      HOSTNAME, sends "hello from python\\n", prints "echo <line>".
      On failure prints "error <kind>: <detail>" and exits 1, where kind is
      "verify" (server certificate refused), "ssl" (TLS alert or failure) or
      "eof" (the server closed the connection without a reply).
  tls_echo_peer.py latency PORT HOSTNAME CAFILE --count N [--cert F --key F]
      N sequential connect + handshake + 5-byte echo round trips (the reply
      is expected as 10 bytes: the server echoes twice); prints
      "p50 <ms>" and "max <ms>".
  tls_echo_peer.py load PORT HOSTNAME CAFILE --count N [--cert F --key F]
      N sequential connect + handshake + 1-byte echo + close; prints
      "lat <ms>,<ms>,..." (one entry per connection).
  tls_echo_peer.py bulk PORT HOSTNAME CAFILE --mib N [--window W] [--plain]
      One connection (TLS, or plain TCP with --plain): sends N MiB while
      reading the echo back, at most W MiB (default 4) ahead of the echo;
      prints "mbps <MB/s>" (1 MB = 10^6 bytes).
  tls_echo_peer.py server CERTFILE KEYFILE [--ca CAFILE] [--count N]
      Threaded echo server on 127.0.0.1 (OS-chosen port), prints "port N".
      With --ca it requires and verifies client certificates. Prints
      "client-cn <CN>" (or "client-cn -") per accepted client and
      "error <detail>" per failed handshake; stops after N connections
      (default: runs until killed).
"""
import argparse
import select
import socket
import ssl
import statistics
import sys
import threading
import time


def common_name(cert):
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return "-"


def client_context(args):
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=args.cafile)
    if args.cert:
        context.load_cert_chain(args.cert, args.key)
    return context


def run_client(args):
    context = client_context(args)
    try:
        with socket.create_connection(("127.0.0.1", args.port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname=args.hostname) as conn:
                conn.sendall(b"hello from python\n")
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if not data:
                    print("error eof: the server closed the connection", flush=True)
                    sys.exit(1)
                print("echo " + data.decode("utf-8").strip(), flush=True)
    except ssl.SSLCertVerificationError as error:
        print("error verify: " + str(error.verify_message), flush=True)
        sys.exit(1)
    except ssl.SSLEOFError as error:
        print("error eof: " + str(error), flush=True)
        sys.exit(1)
    except ssl.SSLError as error:
        print("error ssl: " + str(error), flush=True)
        sys.exit(1)
    except (ConnectionResetError, BrokenPipeError) as error:
        print("error eof: " + str(error), flush=True)
        sys.exit(1)


def run_latency(args):
    context = client_context(args)
    times = []
    for _ in range(args.count):
        start = time.perf_counter()
        with socket.create_connection(("127.0.0.1", args.port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname=args.hostname) as conn:
                conn.sendall(b"ping\n")
                data = b""
                while len(data) < 10:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if len(data) < 10:
                    print("error eof: short reply %d bytes" % len(data), flush=True)
                    sys.exit(1)
        times.append((time.perf_counter() - start) * 1000)
    print("p50 %.2f" % statistics.median(times), flush=True)
    print("max %.2f" % max(times), flush=True)


def run_load(args):
    context = client_context(args)
    times = []
    for _ in range(args.count):
        start = time.perf_counter()
        with socket.create_connection(("127.0.0.1", args.port), timeout=10) as raw:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with context.wrap_socket(raw, server_hostname=args.hostname) as conn:
                conn.sendall(b"x")
                if not conn.recv(16):
                    print("error eof: no echo", flush=True)
                    sys.exit(1)
        times.append((time.perf_counter() - start) * 1000)
    print("lat " + ",".join("%.3f" % t for t in times), flush=True)


def run_bulk(args):
    total = args.mib * 1024 * 1024
    raw = socket.create_connection(("127.0.0.1", args.port), timeout=30)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = raw if args.plain else client_context(args).wrap_socket(
        raw, server_hostname=args.hostname
    )
    chunk = b"\x5a" * 65536
    start = time.perf_counter()
    # One thread, non-blocking: an SSL object must not be read and written
    # from two threads at once.
    conn.setblocking(False)
    sent = 0
    received = 0
    pending = memoryview(b"")
    while received < total:
        want_write = len(pending) > 0 or (
            sent < total and sent - received < args.window * 1024 * 1024
        )
        readable, writable, _ = select.select(
            [conn], [conn] if want_write else [], [], 30
        )
        if not readable and not writable:
            break
        if writable:
            if not pending and sent < total:
                pending = memoryview(chunk)
            try:
                n = conn.send(pending)
                pending = pending[n:]
                if not pending:
                    sent += len(chunk)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                pass
        if readable or (hasattr(conn, "pending") and conn.pending()):
            try:
                while True:
                    data = conn.recv(262144)
                    if not data:
                        received = -received - 1 if received >= 0 else received
                        break
                    received += len(data)
                    if not (hasattr(conn, "pending") and conn.pending()):
                        break
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                pass
            if received < 0:
                received = -received - 1
                break
    elapsed = time.perf_counter() - start
    conn.close()
    if received < total:
        print("error eof: echoed %d of %d bytes" % (received, total), flush=True)
        sys.exit(1)
    print("mbps %.1f" % (total / elapsed / 1e6), flush=True)


def serve_one(context, raw, require):
    raw.settimeout(10)
    try:
        conn = context.wrap_socket(raw, server_side=True)
    except (ssl.SSLError, OSError) as error:
        raw.close()
        print("error " + str(error), flush=True)
        return
    with conn:
        try:
            print("client-cn " + common_name(conn.getpeercert() if require else None), flush=True)
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                conn.sendall(data)
        except (ssl.SSLError, OSError):
            pass


def run_server(args):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.certfile, args.keyfile)
    if args.ca:
        context.load_verify_locations(cafile=args.ca)
        context.verify_mode = ssl.CERT_REQUIRED
    with socket.create_server(("127.0.0.1", 0), backlog=128) as listener:
        print("port %d" % listener.getsockname()[1], flush=True)
        served = 0
        threads = []
        while args.count is None or served < args.count:
            raw, _ = listener.accept()
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread = threading.Thread(
                target=serve_one, args=(context, raw, bool(args.ca)), daemon=True
            )
            thread.start()
            threads.append(thread)
            served += 1
        for thread in threads:
            thread.join(15)


def main():
    parser = argparse.ArgumentParser(description="TLS echo peer")
    sub = parser.add_subparsers(dest="mode", required=True)
    for mode in ("client", "latency", "load", "bulk"):
        p = sub.add_parser(mode)
        p.add_argument("port", type=int)
        p.add_argument("hostname")
        p.add_argument("cafile")
        p.add_argument("--cert")
        p.add_argument("--key")
        p.add_argument("--count", type=int, default=20)
        p.add_argument("--mib", type=int, default=64)
        p.add_argument("--plain", action="store_true")
        p.add_argument("--window", type=int, default=4)
    p = sub.add_parser("server")
    p.add_argument("certfile")
    p.add_argument("keyfile")
    p.add_argument("--ca")
    p.add_argument("--count", type=int)
    args = parser.parse_args()
    modes = {
        "client": run_client,
        "latency": run_latency,
        "load": run_load,
        "bulk": run_bulk,
        "server": run_server,
    }
    modes[args.mode](args)


if __name__ == "__main__":
    main()
