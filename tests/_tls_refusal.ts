// What the TLS tests record of each report to listenTls()'s onError: the
// error's reason, message and cause with the info's phase, address and
// identity, in one object.
import type {
  PeerIdentity,
  TlsError,
  TlsErrorInfo,
  TlsErrorPhase,
  TlsFailure,
} from "../tls.ts";

/** One refused or failed connection, as onError reported it. */
export interface Refusal {
  readonly error: TlsError;
  readonly reason: TlsFailure;
  readonly message: string;
  readonly cause: unknown;
  readonly phase: TlsErrorPhase;
  readonly remoteAddr: Deno.NetAddr | undefined;
  readonly identity: PeerIdentity | null;
}

/** Records an onError call. */
export function refusal(error: TlsError, info: TlsErrorInfo): Refusal {
  return {
    error,
    reason: error.reason,
    message: error.message,
    cause: error.cause,
    phase: info.phase,
    remoteAddr: info.remoteAddr,
    identity: info.identity,
  };
}
