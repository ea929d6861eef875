// Owns one connection's life cycle, as the reference daemon runs it:
//   -e: accept plaintext, connect to the target, handshake as client, pipe;
//   -d: accept ciphertext, handshake as server while connecting to the target, pipe.
// Once the handshake is done and the target connected, both sockets get
// TCP_NODELAY and SO_KEEPALIVE (unless disabled), as the reference's launchpipes()
// does (so a connection that never authenticates costs no setsockopt); a timeout
// covers connecting and the handshake; any failure closes both sockets.

import { connect as netConnect, type Socket } from 'node:net';
import { formatEndpoint, type Endpoint } from './address.js';
import { SpipedError, asSpipedError } from './errors.js';
import { disposeSession, handshake, type Role, type Session } from './handshake.js';
import type { KeyRing } from './key-ring.js';
import { proxyHeader, type ProxyProtocolVersion } from './proxy-protocol.js';
import { pipePackets, type PipeTraffic } from './pipe.js';

/** How the daemon treats each connection. */
export interface ConnectionOptions {
  mode: 'encrypt' | 'decrypt'; // -e or -d
  keys: KeyRing; // K = SHA256(key file) for each -k; -d may hold several (the peer's first DH message picks one); a reload replaces them
  fast: boolean; // -f
  requirePfs: boolean; // -g
  timeoutMs: number; // -o, for connecting and for the handshake
  keepAlive: boolean; // false with -j
  bind: Endpoint | null; // -b: local address for outgoing connections
  targets: () => readonly Endpoint[]; // the target's current addresses (re-resolved by the dispatcher)
  proxyProtocol: ProxyProtocolVersion | null; // --proxy-protocol: a header describing the accepted peer starts the plaintext stream
}

/** What connecting out needs: where from and how long. */
export interface DialOptions {
  timeoutMs: number;
  bind: Endpoint | null;
}

/** Sets TCP_NODELAY, and SO_KEEPALIVE when `keepAlive` (both no-ops on Unix sockets). */
export function tuneSocket(socket: Socket, keepAlive: boolean): void {
  socket.setNoDelay(true);
  if (keepAlive) socket.setKeepAlive(true);
}

/** Connects to one endpoint; resolves once connected; the caller owns the timeout. */
function dialEndpoint(endpoint: Endpoint, bind: Endpoint | null, onSocket: (socket: Socket) => void): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket =
      endpoint.kind === 'unix'
        ? netConnect({ path: endpoint.path, allowHalfOpen: true })
        : netConnect({
            host: endpoint.address,
            port: endpoint.port,
            family: endpoint.family,
            allowHalfOpen: true,
            ...(bind?.kind === 'inet' ? { localAddress: bind.address, localPort: bind.port || undefined } : {}),
          });
    socket.on('error', ignoreLateError);
    onSocket(socket);
    const onError = (err: Error): void => {
      socket.destroy();
      reject(err);
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

/** Connects to the first endpoint that accepts, within `timeoutMs`; throws ECONNECT or ETIMEOUT. */
export async function connectToTarget(endpoints: readonly Endpoint[], options: DialOptions): Promise<Socket> {
  if (endpoints.length === 0) throw new SpipedError('ECONNECT', 'No target address to connect to');
  let current: Socket | null = null;
  let timedOut = false;
  const timer =
    options.timeoutMs > 0
      ? setTimeout(() => {
          timedOut = true;
          current?.destroy(new SpipedError('ETIMEOUT', 'Connection timed out'));
        }, options.timeoutMs)
      : null;
  let lastError: unknown = null;
  try {
    for (const endpoint of endpoints) {
      if (timedOut) break;
      try {
        return await dialEndpoint(endpoint, options.bind, (socket) => (current = socket));
      } catch (err) {
        lastError = err;
      }
    }
  } finally {
    if (timer !== null) clearTimeout(timer);
  }
  if (timedOut) {
    throw new SpipedError('ETIMEOUT', `Timed out connecting to ${endpoints.map(formatEndpoint).join(', ')}`);
  }
  throw asSpipedError(lastError, 'ECONNECT', `Could not connect to ${endpoints.map(formatEndpoint).join(', ')}`);
}

/** Keeps an 'error' listener on every socket at all times; the life cycle reacts through 'close'. */
function ignoreLateError(): void {}

/** Runs the handshake as `role` on `socket`, mapping any failure to a SpipedError. */
export async function runHandshake(
  socket: Socket,
  role: Role,
  options: { key: Buffer | readonly Buffer[] } & Pick<ConnectionOptions, 'fast' | 'requirePfs' | 'timeoutMs'>,
): Promise<Session> {
  try {
    return await handshake(socket, {
      role,
      key: options.key,
      fast: options.fast,
      requirePfs: options.requirePfs,
      timeoutMs: options.timeoutMs,
    });
  } catch (err) {
    throw asSpipedError(err, 'EHANDSHAKE', 'Handshake failed');
  }
}

/** What a connection has done so far, filled in as it goes (for connection logs and metrics). */
export interface ConnectionTally extends PipeTraffic {
  keyIndex: number | null; // which key the handshake used (0 = the first -k), once done
}

/** Carries `accepted` through its whole life, filling in `tally`; resolves when both sockets closed cleanly, rejects with what ended it. */
export async function runConnection(
  accepted: Socket,
  options: ConnectionOptions,
  tally: ConnectionTally = { keyIndex: null, sealed: 0, opened: 0 },
): Promise<void> {
  accepted.on('error', ignoreLateError);
  // Both modes connect to the target at once (-d while it handshakes); a target that connects after a failure is closed at once.
  const connecting = connectToTarget(options.targets(), { timeoutMs: options.timeoutMs, bind: options.bind });
  connecting.catch(ignoreLateError);
  // The keys are leased for the handshake only (a reload meanwhile wipes the old ones once it is over).
  const lease = options.keys.acquire();
  let handshaking: Promise<Session> | null = null;
  let piping = false; // from then on the pipe disposes the session's keys
  try {
    let plain: Socket;
    let encrypted: Socket;
    let session: Session;
    const settings = { key: lease.keys, fast: options.fast, requirePfs: options.requirePfs, timeoutMs: options.timeoutMs };
    try {
      if (options.mode === 'encrypt') {
        plain = accepted;
        encrypted = await connecting;
        handshaking = runHandshake(encrypted, 'client', settings);
        session = await handshaking;
      } else {
        encrypted = accepted;
        handshaking = runHandshake(accepted, 'server', settings);
        [session, plain] = await Promise.all([handshaking, connecting]);
      }
    } finally {
      lease.release();
    }
    tally.keyIndex = session.keyIndex;
    tuneSocket(plain, options.keepAlive);
    tuneSocket(encrypted, options.keepAlive);
    if (options.proxyProtocol !== null) {
      // -e: sealed as the first plaintext (a C -d passes it on unchanged); -d: written to the target before anything opened.
      const header = proxyHeader(options.proxyProtocol, accepted);
      if (options.mode === 'encrypt') encrypted.write(session.sealer.seal(header));
      else plain.write(header);
    }
    piping = true;
    await pipePackets(plain, encrypted, session, tally);
  } catch (err) {
    // A handshake that succeeded for a connection that failed anyway (its target refused): wipe its keys now.
    if (!piping) handshaking?.then(disposeSession, ignoreLateError);
    accepted.destroy();
    connecting.then((target) => target.destroy(), ignoreLateError);
    throw err;
  }
}
