"""A Python multiprocessing.connection peer for tests/multiprocessing_test.ts
and bench/multiprocessing_compare.ts.

Runs CPython's own Listener or Client (with an authkey) and then one
session. Every event is one JSON line on stdout, so the Deno side can follow
along:

    {"event": "listening", "port": 40123}        (listener only)
    {"event": "listening", "path": "/tmp/x.sock"} (listener on --path)
    {"event": "authenticated"}
    {"event": "error", "type": "AuthenticationError", "message": "..."}
    {"event": "done", ...}

Usage:
    mp_peer.py listener|client --authkey-hex HEX [--port N | --path P]
               --session NAME [--sizes 0,1048576] [--count N] [--warmup N]

--path P uses a Unix socket: CPython's Listener(P) and Client(P) pick
AF_UNIX for a string address.

Sessions:
    exchange   send one patterned message per --sizes entry, then echo every
               message received until the peer closes
    echo       echo every message until the peer closes
    pingpong   (client) send --warmup untimed then --count timed small
               messages, each waiting for its echo; report round trips per
               second
    oversized  send a 4-byte length of 0x7fffffff and a few bytes, raw
    oversized-long  send length -1 then an 8-byte length of 2**40, raw
    truncated  send a length of 1000 and 10 bytes, raw, then close
    long-header     send b"hello" framed with -1 and an 8-byte length, raw,
               then echo
    idle       wait until the peer closes
"""

import argparse
import json
import os
import struct
import sys
import time
from multiprocessing.connection import Client, Listener


def report(event, **fields):
    fields["event"] = event
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def pattern(size):
    """Deterministic bytes for a message of `size` bytes (mirrored in Deno)."""
    period = bytes((index * 7 + size) % 256 for index in range(256))
    return (period * (size // 256 + 1))[:size]


def raw_write(conn, data):
    """Writes bytes on the socket, bypassing CPython's framing."""
    view = memoryview(data)
    while view:
        written = os.write(conn.fileno(), view)
        view = view[written:]


def echo_until_eof(conn):
    echoed = 0
    while True:
        try:
            message = conn.recv_bytes()
        except EOFError:
            return echoed
        conn.send_bytes(message)
        echoed += 1


def wait_for_eof(conn):
    try:
        while True:
            conn.recv_bytes()
    except (EOFError, OSError):
        pass


def run_session(conn, args):
    session = args.session
    if session == "exchange":
        sizes = [int(size) for size in args.sizes.split(",") if size != ""]
        for size in sizes:
            conn.send_bytes(pattern(size))
        report("done", sent=len(sizes), echoed=echo_until_eof(conn))
    elif session == "echo":
        report("done", echoed=echo_until_eof(conn))
    elif session == "pingpong":
        message = b"x" * 16
        for _ in range(args.warmup):
            conn.send_bytes(message)
            if conn.recv_bytes() != message:
                raise RuntimeError("echo mismatch")
        start = time.perf_counter()
        for _ in range(args.count):
            conn.send_bytes(message)
            if conn.recv_bytes() != message:
                raise RuntimeError("echo mismatch")
        elapsed = time.perf_counter() - start
        report("done", count=args.count, seconds=elapsed,
               per_second=args.count / elapsed)
    elif session == "oversized":
        raw_write(conn, struct.pack("!i", 0x7FFFFFFF) + b"abcdef")
        wait_for_eof(conn)
        report("done")
    elif session == "oversized-long":
        raw_write(conn, struct.pack("!i", -1) + struct.pack("!Q", 2**40))
        wait_for_eof(conn)
        report("done")
    elif session == "truncated":
        raw_write(conn, struct.pack("!i", 1000) + b"0123456789")
        report("done")
    elif session == "long-header":
        raw_write(conn, struct.pack("!i", -1) + struct.pack("!Q", 5) + b"hello")
        report("done", echoed=echo_until_eof(conn))
    elif session == "idle":
        wait_for_eof(conn)
        report("done")
    else:
        raise SystemExit("unknown session " + session)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["listener", "client"])
    parser.add_argument("--authkey-hex", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--path")
    parser.add_argument("--session", default="echo")
    parser.add_argument("--sizes", default="")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=0)
    args = parser.parse_args()
    authkey = bytes.fromhex(args.authkey_hex)
    address = args.path or ("127.0.0.1", args.port)

    if args.role == "listener":
        with Listener(address, authkey=authkey) as listener:
            if args.path:
                report("listening", path=listener.address)
            else:
                report("listening", port=listener.address[1])
            try:
                conn = listener.accept()
            except Exception as error:  # noqa: BLE001 - reported to the test
                report("error", type=type(error).__name__, message=str(error))
                return
            with conn:
                report("authenticated")
                run_session(conn, args)
    else:
        try:
            conn = Client(address, authkey=authkey)
        except Exception as error:  # noqa: BLE001 - reported to the test
            report("error", type=type(error).__name__, message=str(error))
            return
        with conn:
            report("authenticated")
            run_session(conn, args)


if __name__ == "__main__":
    main()
