"""The Python side of examples/python_worker.ts: a multiprocessing
coordinator that hands jobs to one worker and prints the results.

    CONNAUTH_SECRET=secret python3 examples/python_coordinator.py --port 18050
    CONNAUTH_SECRET=secret deno task python-worker --port 18050
    (add --legacy-md5 to the worker when python3 is 3.11 or older)

Plain CPython: multiprocessing.connection.Listener with an authkey. Jobs and
results travel as UTF-8 JSON with send_bytes()/recv_bytes() (connauth does
not speak pickle). Closing the connection tells the worker to stop.
"""

import argparse
import json
import os
import sys
from multiprocessing import AuthenticationError
from multiprocessing.connection import Listener

DEMO_KEY = "connauth demo key: do not use in production"

DESCRIPTION = """\
A multiprocessing coordinator for examples/python_worker.ts: listens with
the authkey from CONNAUTH_SECRET (else a public demo key), hands jobs to
the first worker that authenticates and prints the results."""

EPILOG = """\
Then, in another terminal:
  CONNAUTH_SECRET=<the same key> deno task python-worker --port <the port>
(add --legacy-md5 to the worker when this runs on Python 3.11 or older)"""

JOBS = [
    "the quick brown fox jumps over the lazy dog",
    "authentication is not encryption",
    "",
    "multiprocessing talks to deno",
]


def refusal(error):
    """Why a worker was refused, never an empty line."""
    detail = str(error) or "the worker closed the connection"
    name = type(error).__name__
    if isinstance(error, EOFError) and sys.version_info < (3, 12):
        # Python 3.11 and older send the legacy HMAC-MD5 challenge, which a
        # connauth worker refuses unless it runs with --legacy-md5.
        return (f"{detail} during the handshake ({name}); this is Python "
                f"{sys.version_info.major}.{sys.version_info.minor}, whose "
                "HMAC-MD5 handshake a connauth worker accepts only with "
                "--legacy-md5 (or run this coordinator on Python 3.12+)")
    return f"{detail} ({name})"


def main():
    parser = argparse.ArgumentParser(
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--port", type=int, default=18050,
                        help="TCP port (default 18050; 0 picks a free one)")
    parser.add_argument("--hostname", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1)")
    args = parser.parse_args()
    key = os.environ.get("CONNAUTH_SECRET")
    if not key:
        print("warning: using the built-in demo key; set CONNAUTH_SECRET",
              file=sys.stderr)
        key = DEMO_KEY

    with Listener((args.hostname, args.port), authkey=key.encode()) as listener:
        host, port = listener.address
        print(f"listening on {host}:{port}", flush=True)
        while True:
            try:
                conn = listener.accept()
                break
            except (AuthenticationError, EOFError, OSError) as error:
                print(f"worker refused: {refusal(error)}", flush=True)
        with conn:
            print("worker authenticated", flush=True)
            for number, text in enumerate(JOBS, 1):
                job = {"id": number, "text": text}
                conn.send_bytes(json.dumps(job).encode())
                result = json.loads(conn.recv_bytes().decode())
                print(f"job {result['id']}: {result['words']} words, "
                      f"{result['upper']!r}", flush=True)
        print("done", flush=True)


if __name__ == "__main__":
    main()
