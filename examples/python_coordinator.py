"""The Python side of examples/python_worker.ts: a multiprocessing
coordinator that hands jobs to one worker and prints the results.

    CONNAUTH_SECRET=secret python3.12 examples/python_coordinator.py --port 18050
    CONNAUTH_SECRET=secret deno task python-worker --port 18050

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

JOBS = [
    "the quick brown fox jumps over the lazy dog",
    "authentication is not encryption",
    "",
    "multiprocessing talks to deno",
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=18050)
    parser.add_argument("--hostname", default="127.0.0.1")
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
                print(f"worker refused: {error}", flush=True)
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
