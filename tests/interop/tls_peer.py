"""A TLS peer built on Python's ssl module, for the certificate interop tests.

usage:
  tls_peer.py client PORT HOSTNAME CAFILE [CERTFILE KEYFILE]
    Connects to 127.0.0.1:PORT, verifies the server certificate against
    CAFILE with hostname checking for HOSTNAME (a DNS name or an IP
    address), optionally presents a client certificate, sends one line,
    reads the echoed line and prints "echo <line>" and "peer-cn <CN>".
    On a verification failure prints "error <reason>" and exits 1.
  tls_peer.py server CERTFILE KEYFILE CAFILE
    Listens on 127.0.0.1 with an OS-chosen port, prints "port N", requires
    and verifies a client certificate against CAFILE, prints
    "client-cn <CN>", echoes one line and exits. A handshake failure prints
    "error <reason>" and exits 1.
"""
import socket
import ssl
import sys


def common_name(cert):
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return ""


def read_line(conn):
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(1024)
        if not chunk:
            break
        data += chunk
    return data


def run_client(args):
    port, hostname, cafile = int(args[0]), args[1], args[2]
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    if len(args) >= 5:
        context.load_cert_chain(args[3], args[4])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname=hostname) as conn:
                conn.sendall(b"hello from python\n")
                line = read_line(conn)
                print("echo " + line.decode("utf-8").strip(), flush=True)
                print("peer-cn " + common_name(conn.getpeercert()), flush=True)
    except ssl.SSLCertVerificationError as error:
        print("error " + str(error.verify_message), flush=True)
        sys.exit(1)
    except ssl.SSLError as error:
        print("error " + str(error), flush=True)
        sys.exit(1)


def run_server(args):
    certfile, keyfile, cafile = args[0], args[1], args[2]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile, keyfile)
    context.load_verify_locations(cafile=cafile)
    context.verify_mode = ssl.CERT_REQUIRED
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(20)
        print("port %d" % listener.getsockname()[1], flush=True)
        raw, _ = listener.accept()
        raw.settimeout(10)
        try:
            conn = context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as error:
            raw.close()
            print("error " + str(error), flush=True)
            sys.exit(1)
        with conn:
            print("client-cn " + common_name(conn.getpeercert()), flush=True)
            line = read_line(conn)
            conn.sendall(line)


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ("client", "server"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    if sys.argv[1] == "client":
        run_client(sys.argv[2:])
    else:
        run_server(sys.argv[2:])


if __name__ == "__main__":
    main()
