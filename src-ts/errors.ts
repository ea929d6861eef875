// Owns the typed error every spiped-native stage raises: a SpipedError carries a
// stable `code` so callers (the CLIs, library users) can tell failures apart.

/** Every failure code spiped-native reports. */
export type SpipedErrorCode =
  | 'EKEYFILE' // the key file could not be read
  | 'EADDRESS' // a socket address string is malformed
  | 'ERESOLVE' // a host name resolved to nothing
  | 'ECONNECT' // the target could not be connected to
  | 'ETIMEOUT' // connecting or the handshake took longer than the timeout
  | 'EHANDSHAKE' // the peer failed the handshake (wrong key, bad DH value, -g vs -f, early close)
  | 'EBADPACKET' // a packet failed authentication or carried a bad length
  | 'ECLOSED'; // the peer closed or reset the connection mid-stream

/** Why a handshake failed, as a stable token (connection logs and metrics use it). */
export type HandshakeFailureReason =
  | 'bad_mac' // the peer's DH message did not verify under any key: it does not hold the key (or the bytes were damaged)
  | 'bad_dh_value' // an authenticated DH value >= p
  | 'no_forward_secrecy' // -g and the peer sent y = 1 (-f)
  | 'peer_closed' // the peer closed before the handshake was done
  | 'socket_error'; // the socket failed during the handshake

/** What a SpipedError may carry beside its message. */
export interface SpipedErrorOptions {
  cause?: unknown;
  reason?: HandshakeFailureReason; // EHANDSHAKE only
  keyFile?: string; // EKEYFILE only: the key file ("-" for standard input) that could not be read
}

/** An error with a stable code; `cause` keeps the underlying error where there is one, `reason` says why a handshake failed. */
export class SpipedError extends Error {
  readonly code: SpipedErrorCode;
  readonly reason: HandshakeFailureReason | undefined;
  readonly keyFile: string | undefined;

  /** Creates an error with `code` and a human-readable message. */
  constructor(code: SpipedErrorCode, message: string, options?: SpipedErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SpipedError';
    this.code = code;
    this.reason = options?.reason;
    this.keyFile = options?.keyFile;
  }
}

/** Returns `err` when it is a SpipedError, else wraps it with `code` and `context`. */
export function asSpipedError(err: unknown, code: SpipedErrorCode, context: string): SpipedError {
  if (err instanceof SpipedError) return err;
  const detail = err instanceof Error ? err.message : String(err);
  return new SpipedError(code, `${context}: ${detail}`, { cause: err });
}

/** Runs `create` with stack traces off: for failures a remote peer can cause at will (capturing a stack is most of what a junk connection would cost). */
function withoutStack<T>(create: () => T): T {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return create();
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/** A SpipedError without a stack trace (see withoutStack). */
export function peerError(code: SpipedErrorCode, message: string, options?: SpipedErrorOptions): SpipedError {
  return withoutStack(() => new SpipedError(code, message, options));
}

/** A failed system call as Node reports one (message `<syscall> <code>[ <detail>]`, with code, errno and syscall), without a stack trace. */
export function systemError(code: string, errno: number, syscall: string, detail?: string): NodeJS.ErrnoException {
  const message = detail === undefined ? `${syscall} ${code}` : `${syscall} ${code} ${detail}`;
  return withoutStack(() => Object.assign(new Error(message), { code, errno, syscall }));
}
