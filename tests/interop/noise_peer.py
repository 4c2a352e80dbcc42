"""A Noise_NNpsk0_25519_AESGCM_SHA256 peer, for interop tests.

Written from the Noise Protocol Framework specification (revision 34):
CipherState, SymmetricState and the NNpsk0 handshake (-> psk, e / <- e, ee),
on the `cryptography` package (X25519, AES-GCM) and hashlib/hmac (SHA-256,
HKDF as the spec defines it). Messages travel as frames: a 2-byte big-endian
length, then the Noise message.

usage:
  noise_peer.py initiator PORT PSK_HEX PROLOGUE
      Connects to 127.0.0.1:PORT, runs the handshake, prints "hash <hex>",
      sends a set of messages (the first, with data, is the first transport
      message the responder waits for), checks that each comes back
      unchanged, half-closes, waits for the end of stream and prints "ok".
  noise_peer.py responder PSK_HEX PROLOGUE
      Listens on 127.0.0.1 (a free port), prints "port <n>", accepts one
      connection, runs the handshake, then, as connauth's responder does,
      waits for the initiator's first transport message (the only proof that
      the initiator holds the PSK in this session: its first handshake
      message could be a replay) and prints "hash <hex> first <length>".
      It echoes that message unless it is empty, then every message until
      the end of stream, half-closes and prints "ok <echoed>".
Exit status: 0 ok, 3 a handshake message did not decrypt ("error wrong-key"),
4 the peer closed the connection early ("error closed"), 5 another failure.
"""
import hashlib
import hmac
import os
import socket
import struct
import sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

PROTOCOL_NAME = b"Noise_NNpsk0_25519_AESGCM_SHA256"
HASHLEN = 32
DHLEN = 32
MAX_NONCE = 2**64 - 1


class Closed(Exception):
    pass


def sha256(data):
    return hashlib.sha256(data).digest()


def hkdf(chaining_key, input_key_material, num_outputs):
    temp_key = hmac.new(chaining_key, input_key_material, hashlib.sha256).digest()
    outputs = []
    previous = b""
    for i in range(1, num_outputs + 1):
        previous = hmac.new(temp_key, previous + bytes([i]), hashlib.sha256).digest()
        outputs.append(previous)
    return outputs


class CipherState:
    def __init__(self, key=None):
        self.key = key
        self.n = 0

    def _nonce(self):
        if self.n >= MAX_NONCE:
            raise RuntimeError("nonce exhausted")
        return b"\x00\x00\x00\x00" + struct.pack(">Q", self.n)

    def encrypt_with_ad(self, ad, plaintext):
        if self.key is None:
            return plaintext
        ciphertext = AESGCM(self.key).encrypt(self._nonce(), plaintext, ad)
        self.n += 1
        return ciphertext

    def decrypt_with_ad(self, ad, ciphertext):
        if self.key is None:
            return ciphertext
        plaintext = AESGCM(self.key).decrypt(self._nonce(), ciphertext, ad)
        self.n += 1
        return plaintext


class SymmetricState:
    def __init__(self):
        if len(PROTOCOL_NAME) <= HASHLEN:
            self.h = PROTOCOL_NAME + b"\x00" * (HASHLEN - len(PROTOCOL_NAME))
        else:
            self.h = sha256(PROTOCOL_NAME)
        self.ck = self.h
        self.cipher = CipherState()

    def mix_hash(self, data):
        self.h = sha256(self.h + data)

    def mix_key(self, input_key_material):
        self.ck, temp_k = hkdf(self.ck, input_key_material, 2)
        self.cipher = CipherState(temp_k)

    def mix_key_and_hash(self, input_key_material):
        self.ck, temp_h, temp_k = hkdf(self.ck, input_key_material, 3)
        self.mix_hash(temp_h)
        self.cipher = CipherState(temp_k)

    def encrypt_and_hash(self, plaintext):
        ciphertext = self.cipher.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext):
        plaintext = self.cipher.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self):
        temp_k1, temp_k2 = hkdf(self.ck, b"", 2)
        return CipherState(temp_k1), CipherState(temp_k2)


def public_bytes(private_key):
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def recv_exactly(sock, count):
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise Closed()
        data += chunk
    return data


def recv_frame(sock):
    """Returns the next frame, or None at a clean end of stream."""
    first = sock.recv(1)
    if not first:
        return None
    header = first + recv_exactly(sock, 1)
    (length,) = struct.unpack(">H", header)
    return recv_exactly(sock, length)


def send_frame(sock, message):
    if len(message) > 65535:
        raise ValueError("Noise message too long")
    sock.sendall(struct.pack(">H", len(message)) + message)


def handshake_initiator(sock, psk, prologue):
    state = SymmetricState()
    state.mix_hash(prologue)
    # -> psk, e
    state.mix_key_and_hash(psk)
    e = X25519PrivateKey.generate()
    e_pub = public_bytes(e)
    state.mix_hash(e_pub)
    state.mix_key(e_pub)  # psk mode: e also mixes the key
    send_frame(sock, e_pub + state.encrypt_and_hash(b""))
    # <- e, ee
    reply = recv_frame(sock)
    if reply is None:
        raise Closed()
    re = reply[:DHLEN]
    state.mix_hash(re)
    state.mix_key(re)
    state.mix_key(e.exchange(X25519PublicKey.from_public_bytes(re)))
    state.decrypt_and_hash(reply[DHLEN:])
    c1, c2 = state.split()
    return c1, c2, state.h


def handshake_responder(sock, psk, prologue):
    state = SymmetricState()
    state.mix_hash(prologue)
    # -> psk, e
    message = recv_frame(sock)
    if message is None:
        raise Closed()
    state.mix_key_and_hash(psk)
    re = message[:DHLEN]
    state.mix_hash(re)
    state.mix_key(re)
    state.decrypt_and_hash(message[DHLEN:])
    # <- e, ee
    e = X25519PrivateKey.generate()
    e_pub = public_bytes(e)
    state.mix_hash(e_pub)
    state.mix_key(e_pub)
    state.mix_key(e.exchange(X25519PublicKey.from_public_bytes(re)))
    send_frame(sock, e_pub + state.encrypt_and_hash(b""))
    c1, c2 = state.split()
    return c2, c1, state.h


def say(*words):
    print(*words, flush=True)


def run_initiator(port, psk, prologue):
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        send, receive, h = handshake_initiator(sock, psk, prologue)
        say("hash", h.hex())
        messages = [b"hello from python", b"", os.urandom(65535 - 16), b"bye"]
        for message in messages:
            send_frame(sock, send.encrypt_with_ad(b"", message))
        for message in messages:
            frame = recv_frame(sock)
            if frame is None:
                raise Closed()
            if receive.decrypt_with_ad(b"", frame) != message:
                raise RuntimeError("the echo differs from what was sent")
        sock.shutdown(socket.SHUT_WR)
        if recv_frame(sock) is not None:
            raise RuntimeError("expected the end of stream")
        say("ok")


def run_responder(psk, prologue):
    with socket.create_server(("127.0.0.1", 0)) as server:
        say("port", server.getsockname()[1])
        server.settimeout(20)
        conn, _ = server.accept()
        with conn:
            conn.settimeout(20)
            send, receive, h = handshake_responder(conn, psk, prologue)
            frame = recv_frame(conn)
            if frame is None:
                raise Closed()
            first = receive.decrypt_with_ad(b"", frame)
            say("hash", h.hex(), "first", len(first))
            count = 0
            if first:
                send_frame(conn, send.encrypt_with_ad(b"", first))
                count += 1
            while True:
                frame = recv_frame(conn)
                if frame is None:
                    break
                plaintext = receive.decrypt_with_ad(b"", frame)
                send_frame(conn, send.encrypt_with_ad(b"", plaintext))
                count += 1
            conn.shutdown(socket.SHUT_WR)
            say("ok", count)


def main():
    try:
        if sys.argv[1] == "initiator":
            run_initiator(int(sys.argv[2]), bytes.fromhex(sys.argv[3]), sys.argv[4].encode())
        elif sys.argv[1] == "responder":
            run_responder(bytes.fromhex(sys.argv[2]), sys.argv[3].encode())
        else:
            raise SystemExit(__doc__)
    except InvalidTag:
        say("error wrong-key")
        sys.exit(3)
    except (Closed, ConnectionResetError, BrokenPipeError):
        say("error closed")
        sys.exit(4)
    except Exception as error:  # noqa: BLE001 - report any failure to the test
        say("error", type(error).__name__, error)
        sys.exit(5)


if __name__ == "__main__":
    main()
