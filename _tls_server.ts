// Private: the node:tls server under listenTls() and what happens to each
// connection it accepts, in order: counted in its handshake (_tls_handshakes
// .ts), its certificate verified and read (_tls_diagnosis.ts), matched
// against `allow`, wrapped (_tls_server_conn.ts), put to the `authorize`
// hook (_tls_authorize.ts), then queued for accept() (_tls_listener.ts).
// Every refusal is reported once, as a TlsError with the phase it happened
// in. Every handler here runs on a peer's event: a throw in one closes that
// connection and is reported, never reaching the event loop. (About 400
// lines: the steps are in their own files; this one keeps their order and
// their reports together.)
import * as nodeTls from "node:tls";
import {
  type PeerIdentity,
  type TlsAllowList,
  TlsError,
  type TlsErrorInfo,
  type TlsErrorPhase,
  type TlsFailure,
  type TlsListener,
} from "./tls.ts";
import { formatAddr } from "./_address.ts";
import { RateLimitedLog } from "./_log.ts";
import { allowed } from "./_tls_allow.ts";
import { authorizeClient, type AuthorizeHook } from "./_tls_authorize.ts";
import {
  type CredentialState,
  ServerCredentials,
  trustedNow,
} from "./_tls_credentials.ts";
import {
  describe,
  errorText,
  peerCertificateDer,
  verifyClient,
} from "./_tls_diagnosis.ts";
import { SniFault } from "./_tls_sni.ts";
import { type HandshakeLimits, Handshakes } from "./_tls_handshakes.ts";
import { Listener } from "./_tls_listener.ts";
import {
  netAddr,
  peerOf,
  type RawSocket,
  ServerConn,
} from "./_tls_server_conn.ts";

/** listenTls()'s options, checked and read. */
export interface TlsServerConfig extends HandshakeLimits {
  hostname: string;
  port: number;
  /** Certificate, key, client CAs and SNI map at listen. */
  credentials: CredentialState;
  requireClientCert: boolean;
  allow: TlsAllowList | undefined;
  authorize: AuthorizeHook | undefined;
  authorizeTimeout: number;
  acceptQueue: number;
  readBufferLimit: number;
  alpnProtocols: string[] | undefined;
  onError: ((error: TlsError, info: TlsErrorInfo) => void) | undefined;
  signal: AbortSignal | undefined;
}

/** Reports one refused or failed connection. */
type Report = (
  phase: TlsErrorPhase,
  reason: TlsFailure,
  message: string,
  remoteAddr: Deno.NetAddr | undefined,
  identity: PeerIdentity | null,
  cause?: unknown,
) => void;

/**
 * The report: to `onError` (guarded: a throwing hook is ignored), or by
 * default one line on stderr, at most 20 a second (_log.ts).
 */
function reporter(
  onError: TlsServerConfig["onError"],
  log: RateLimitedLog | undefined,
): Report {
  return (phase, reason, message, remoteAddr, identity, cause) => {
    const error = new TlsError(
      `Cannot accept the TLS connection: ${message}`,
      reason,
      cause === undefined ? undefined : { cause },
    );
    if (onError === undefined) {
      log?.line(() =>
        `refused ${formatAddr(remoteAddr)} (${reason}): ${error.message}`
      );
      return;
    }
    try {
      onError(error, { phase, remoteAddr, identity });
    } catch {
      // a throwing hook must not stop the listener
    }
  };
}

/** Opens the node:tls server and its listener; see the file's head. */
export async function openTlsServer(
  config: TlsServerConfig,
): Promise<TlsListener> {
  const mutual = config.credentials.clientCa !== undefined;
  const log = config.onError === undefined
    ? new RateLimitedLog({ prefix: "connauth tls: " })
    : undefined;
  const report = reporter(config.onError, log);
  const server = nodeTls.createServer({
    cert: config.credentials.cert,
    key: config.credentials.key,
    ca: config.credentials.clientCa,
    requestCert: mutual,
    // We decide ourselves (_tls_diagnosis.ts), so that a refusal is
    // reported with its precise reason; the runtime's verdict is
    // `socket.authorized`.
    rejectUnauthorized: false,
    // No per-socket timer: node:tls on Deno 2.9.6 keeps a socket whose
    // handshake failed (about 5.5 KiB) until its handshake timer fires, and
    // takes 0 for 120 s and Infinity for 1 ms. A negative value turns the
    // timer off; `handshakes` keeps the deadlines instead.
    handshakeTimeout: -1,
    noDelay: true,
    // Half-open only once the handshake is done ('secureConnection' turns it
    // on): a client that closes before it finishes the handshake is closed
    // at once, not left in CLOSE-WAIT until its deadline.
    allowHalfOpen: false,
    ALPNProtocols: config.alpnProtocols,
  } as nodeTls.TlsOptions);
  // Replaced for new connections by setCredentials(); a throw of node:tls
  // inside the SNI callback is reported here (the handshake then ends at
  // its deadline).
  const credentials = new ServerCredentials(
    server,
    config.credentials,
    (error) =>
      report(
        "handshake",
        "handshake",
        `an internal error in the SNI callback left a handshake to its deadline: ${
          errorText(error)
        }`,
        undefined,
        null,
        error,
      ),
  );
  const handshakes = new Handshakes(
    config,
    (reason, message, remoteAddr) =>
      report(
        reason === "handshake" ? "handshake" : "accept",
        reason,
        message,
        remoteAddr,
        null,
      ),
  );
  const listener = await new Promise<Listener>((resolve, reject) => {
    const onError = (error: unknown) => {
      server.close();
      reject(error);
    };
    server.once("error", onError);
    server.listen(config.port, config.hostname, () => {
      server.off("error", onError);
      try {
        resolve(
          new Listener({
            server,
            acceptQueue: config.acceptQueue,
            handshakes,
            credentials,
            log,
            signal: config.signal,
          }),
        );
      } catch (error) {
        server.close();
        reject(error);
      }
    });
  });

  const fault = (
    phase: TlsErrorPhase,
    socket: { destroy(): void } | undefined,
    error: unknown,
    remoteAddr: Deno.NetAddr | undefined,
    identity: PeerIdentity | null,
  ) => {
    try {
      socket?.destroy();
    } catch {
      // already gone
    }
    report(
      phase,
      "handshake",
      `the connection was closed after an internal error: ${errorText(error)}`,
      remoteAddr,
      identity,
      error,
    );
  };

  server.on("error", (error: unknown) => {
    report(
      "accept",
      "handshake",
      `listener error: ${errorText(error)}`,
      undefined,
      null,
      error,
    );
  });

  server.on("connection", (raw: RawSocket) => {
    let remoteAddr: Deno.NetAddr | undefined;
    try {
      // node:tls made its TLS socket with the credentials in force now.
      credentials.pin(raw);
      remoteAddr = peerOf(raw);
      if (handshakes.accept(raw, remoteAddr)) raw.setNoDelay?.(true);
    } catch (error) {
      fault("accept", raw, error, remoteAddr, null);
    }
  });

  server.on(
    "tlsClientError",
    (error: Error & { code?: string }, socket: nodeTls.TLSSocket) => {
      let remoteAddr: Deno.NetAddr | undefined;
      try {
        remoteAddr = peerOf(socket);
        socket?.destroy();
        // A handshake the listener closed (evicted, over maxPerAddress, past
        // its deadline, or at close) was reported then.
        if (handshakes.closedHere(socket)) return;
        if (error instanceof SniFault) {
          report(
            "handshake",
            "handshake",
            error.message,
            remoteAddr,
            null,
            error.cause,
          );
          return;
        }
        const code = (error as { code?: unknown })?.code;
        const message = code === "ECONNRESET"
          ? "the client closed the connection before completing the TLS handshake"
          : `the TLS handshake failed: ${errorText(error)}${
            typeof code === "string" ? ` (${code})` : ""
          }`;
        report("handshake", "handshake", message, remoteAddr, null, error);
      } catch (thrown) {
        fault("handshake", socket, thrown, remoteAddr, null);
      }
    },
  );

  server.on("secureConnection", (socket: nodeTls.TLSSocket) => {
    // What the failure report can name if the handler throws half way.
    const seen = {
      phase: "verify" as TlsErrorPhase,
      remoteAddr: undefined as Deno.NetAddr | undefined,
      identity: null as PeerIdentity | null,
    };
    try {
      secured(socket, seen);
    } catch (error) {
      fault(seen.phase, socket, error, seen.remoteAddr, seen.identity);
    }
  });

  /** A completed handshake: verify, identify, authorize, then deliver. */
  const secured = (
    socket: nodeTls.TLSSocket,
    seen: {
      phase: TlsErrorPhase;
      remoteAddr?: Deno.NetAddr;
      identity: PeerIdentity | null;
    },
  ) => {
    // Its handshake is complete: no longer counted, never evicted.
    handshakes.completed(socket);
    listener.track(socket);
    // Keep an early error from being unhandled before the wrapper exists.
    socket.on("error", () => {});
    // From here on a half-close by the client (close_notify) leaves our
    // side open, so the application can still answer.
    socket.allowHalfOpen = true;
    socket.setNoDelay(true);
    const remoteAddr = peerOf(socket) ?? netAddr(undefined, undefined);
    seen.remoteAddr = remoteAddr;
    const refuse = (
      phase: TlsErrorPhase,
      reason: TlsFailure,
      message: string,
      identity: PeerIdentity | null,
    ) => {
      socket.destroy();
      report(phase, reason, message, remoteAddr, identity);
    };
    let identity: PeerIdentity | null = null;
    if (mutual) {
      const pinned = credentials.of(socket);
      const verdict = verifyClient(socket, {
        requireClientCert: config.requireClientCert,
        clientCas: pinned.clientCas,
      }, seen);
      if ("refusal" in verdict) {
        const { reason, message, identity } = verdict.refusal;
        return refuse("verify", reason, message, identity);
      }
      identity = verdict.identity;
      // Verified against the CAs in force when its TCP connection was
      // accepted: not enough once setCredentials() has taken one out.
      const current = credentials.current;
      if (identity !== null && pinned !== current) {
        const der = peerCertificateDer(socket);
        if (!(der instanceof Uint8Array && trustedNow(der, pinned, current))) {
          return refuse(
            "verify",
            "unknown-ca",
            `the certificate of ${
              describe(identity)
            } was refused: setCredentials() took a client CA out of \`clientCa\` while its handshake was under way, and none of those in force now issued it; the client may reconnect`,
            identity,
          );
        }
      }
    }
    seen.phase = "authorize";
    if (config.allow && !allowed(identity, config.allow)) {
      return refuse(
        "authorize",
        "not-allowed",
        `${
          describe(identity)
        } is verified but not in the allow list (cn, san, fingerprint)`,
        identity,
      );
    }
    // From here on, what the client sends is queued in the connection's
    // stream against readBufferLimit, also while the authorize hook runs.
    let overflowed: (() => void) | undefined;
    const conn = new ServerConn(
      socket,
      identity,
      config.readBufferLimit,
      () => overflowed?.(),
      (error) => fault("accept", undefined, error, remoteAddr, identity),
    );
    const deliver = () => {
      if (socket.destroyed || listener.deliver(socket, conn)) return;
      report(
        "accept",
        "queue-full",
        `${config.acceptQueue} verified connections are waiting for accept(); call accept() faster or raise \`acceptQueue\``,
        remoteAddr,
        identity,
      );
    };
    if (!config.authorize) return deliver();
    if (!listener.reserve()) {
      return refuse(
        "authorize",
        "queue-full",
        `${config.acceptQueue} connections are waiting for the authorize hook or for accept(); ${
          describe(identity)
        } was closed; make the hook answer faster, call accept() faster or raise \`acceptQueue\``,
        identity,
      );
    }
    const wait = authorizeClient(config.authorize, {
      identity,
      remoteAddr,
      timeout: config.authorizeTimeout,
      readBufferLimit: config.readBufferLimit,
    }, {
      settled: () => {
        socket.off("close", wait.disconnected);
        overflowed = undefined;
        listener.release();
      },
      accept: deliver,
      refuse: (reason, message) =>
        refuse("authorize", reason, message, identity),
      fault: (error) => fault("authorize", socket, error, remoteAddr, identity),
    });
    socket.once("close", wait.disconnected);
    overflowed = wait.overflowed;
  };

  return listener;
}
