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

/** An error with a stable code; `cause` keeps the underlying error where there is one. */
export class SpipedError extends Error {
  readonly code: SpipedErrorCode;

  /** Creates an error with `code` and a human-readable message. */
  constructor(code: SpipedErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SpipedError';
    this.code = code;
  }
}

/** Returns `err` when it is a SpipedError, else wraps it with `code` and `context`. */
export function asSpipedError(err: unknown, code: SpipedErrorCode, context: string): SpipedError {
  if (err instanceof SpipedError) return err;
  const detail = err instanceof Error ? err.message : String(err);
  return new SpipedError(code, `${context}: ${detail}`, { cause: err });
}

/** A SpipedError without a stack trace, for failures a remote peer can cause at will (capturing a stack is most of what a junk connection would cost). */
export function peerError(code: SpipedErrorCode, message: string, options?: { cause?: unknown }): SpipedError {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return new SpipedError(code, message, options);
  } finally {
    Error.stackTraceLimit = limit;
  }
}
