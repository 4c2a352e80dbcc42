"""Good multiprocessing.connection clients, one after another, for
tests/hostile/multiprocessing_test.ts.

usage:
  mp_clients.py HOST PORT AUTHKEY_HEX COUNT SECONDS

Connects COUNT times, one connection at a time, with CPython's own
Client((HOST, PORT), authkey=...), sends one message with send_bytes() and
waits for it to come back with recv_bytes(). Client() has no timeout of its
own, so each client is bounded by SECONDS with an interval timer
(SIGALRM). Prints one JSON line per client:
  {"client": I, "ms": T}                      served, in T milliseconds
  {"client": I, "ms": T, "error": "..."}      not served (the error's type)
and stops after the first client that is not served.
"""
import json
import signal
import sys
import time
from multiprocessing.connection import Client


class Late(Exception):
    pass


def on_alarm(_signum, _frame):
    raise Late()


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    authkey = bytes.fromhex(sys.argv[3])
    count, seconds = int(sys.argv[4]), float(sys.argv[5])
    signal.signal(signal.SIGALRM, on_alarm)
    for index in range(count):
        message = b"client %d" % index
        start = time.perf_counter()
        error = None
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            with Client((host, port), authkey=authkey) as conn:
                conn.send_bytes(message)
                if conn.recv_bytes() != message:
                    error = "wrong echo"
        except Late:
            error = "timeout"
        except Exception as caught:  # noqa: BLE001 - reported to the test
            error = type(caught).__name__
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        line = {"client": index, "ms": round((time.perf_counter() - start) * 1000, 1)}
        if error is not None:
            line["error"] = error
        print(json.dumps(line), flush=True)
        if error is not None:
            return


if __name__ == "__main__":
    main()
