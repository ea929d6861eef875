// Owns one connection's life cycle, as the reference daemon runs it, on Channels
// (channel.ts: libuv handles where Node has them):
//   -e: accept plaintext, connect to the target, handshake as client, pipe;
//   -d: accept ciphertext, handshake as server while connecting to the target, pipe.
// Once the handshake is done and the target connected, both sockets get
// TCP_NODELAY and SO_KEEPALIVE (unless disabled), as the reference's launchpipes()
// does (so a connection that never authenticates costs no setsockopt); a timeout
// covers connecting and the handshake; any failure closes both sockets.

import type { Socket } from 'node:net';
import { formatEndpoint, type Endpoint } from './address.js';
import { dialChannel, dialSocket, type Channel, type DialAttempt } from './channel.js';
import { SpipedError, asSpipedError } from './errors.js';
import { disposeSession, handshake, handshakeChannel, type ChannelHandshake, type HandshakeOptions, type Role, type Session } from './handshake.js';
import type { KeyRing } from './key-ring.js';
import { proxyHeader, type ProxyProtocolVersion } from './proxy-protocol.js';
import { pipeChannels, type PipeTraffic } from './pipe.js';

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

/** Connects one endpoint from `bind`; `onAttempt` gets the attempt at once (for the caller's timeout); resolves once connected. */
type Dialer<T> = (endpoint: Endpoint, bind: Endpoint | null, onAttempt: (attempt: DialAttempt) => void) => Promise<T>;

/** A connection to the target under way: its result, and a way to give it up (the attempt in flight is closed, no other endpoint tried). */
interface TargetDial<T> {
  result: Promise<T>;
  abandon: () => void;
}

/** Connects to the first endpoint that accepts, within `timeoutMs`, with `dial`; the result rejects with ECONNECT or ETIMEOUT. */
function connectFirst<T>(endpoints: readonly Endpoint[], options: DialOptions, dial: Dialer<T>): TargetDial<T> {
  let current: DialAttempt | null = null;
  let abandoned = false;
  const abandon = (): void => {
    abandoned = true;
    current?.destroy(new SpipedError('ECONNECT', 'Connection abandoned'));
  };
  const result = (async (): Promise<T> => {
    if (endpoints.length === 0) throw new SpipedError('ECONNECT', 'No target address to connect to');
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
        if (timedOut || abandoned) break;
        try {
          return await dial(endpoint, options.bind, (attempt) => (current = attempt));
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
  })();
  return { result, abandon };
}

/** Connects a net.Socket to the first endpoint that accepts, within `timeoutMs`; throws ECONNECT or ETIMEOUT. */
export function connectToTarget(endpoints: readonly Endpoint[], options: DialOptions): Promise<Socket> {
  return connectFirst(endpoints, options, dialSocket).result;
}

/** Runs `run` (a handshake as `role`), mapping any failure to a SpipedError. */
async function asHandshakeFailure<T>(run: Promise<T>): Promise<T> {
  try {
    return await run;
  } catch (err) {
    throw asSpipedError(err, 'EHANDSHAKE', 'Handshake failed');
  }
}

/** What runHandshake() takes beside the socket and role. */
type HandshakeSettings = { key: Buffer | readonly Buffer[] } & Pick<ConnectionOptions, 'fast' | 'requirePfs' | 'timeoutMs'>;

/** Runs the handshake as `role` on `socket`, mapping any failure to a SpipedError. */
export function runHandshake(socket: Socket, role: Role, options: HandshakeSettings): Promise<Session> {
  return asHandshakeFailure(handshake(socket, { role, ...options }));
}

/** Keeps every failure that nobody awaits (yet) from becoming an unhandled rejection; the life cycle reacts where it awaits. */
function ignoreLateError(): void {}

/** What a connection has done so far, filled in as it goes (for connection logs and metrics). */
export interface ConnectionTally extends PipeTraffic {
  keyIndex: number | null; // which key the handshake used (0 = the first -k), once done
}

/** Carries `accepted` through its whole life, filling in `tally`; resolves when both channels closed cleanly, rejects with what ended it. */
export async function runConnection(
  accepted: Channel,
  options: ConnectionOptions,
  tally: ConnectionTally = { keyIndex: null, sealed: 0, opened: 0 },
): Promise<void> {
  // Both modes connect to the target at once (-d while it handshakes); after a failure, a connect under way is abandoned and a target already connected closed.
  const target = connectFirst(options.targets(), { timeoutMs: options.timeoutMs, bind: options.bind }, dialChannel);
  const connecting = target.result;
  connecting.catch(ignoreLateError);
  // The keys are leased for the handshake only (a reload meanwhile wipes the old ones once it is over).
  const lease = options.keys.acquire();
  let handshaking: Promise<ChannelHandshake> | null = null;
  let piping = false; // from then on the pipe disposes the session's keys
  try {
    let plain: Channel;
    let encrypted: Channel;
    let done: ChannelHandshake;
    const settings: HandshakeOptions = {
      role: options.mode === 'encrypt' ? 'client' : 'server',
      key: lease.keys,
      fast: options.fast,
      requirePfs: options.requirePfs,
      timeoutMs: options.timeoutMs,
    };
    try {
      if (options.mode === 'encrypt') {
        plain = accepted;
        encrypted = await connecting;
        handshaking = asHandshakeFailure(handshakeChannel(encrypted, settings));
        done = await handshaking;
      } else {
        encrypted = accepted;
        handshaking = asHandshakeFailure(handshakeChannel(accepted, settings));
        [done, plain] = await Promise.all([handshaking, connecting]);
      }
    } finally {
      lease.release();
    }
    const { session } = done;
    tally.keyIndex = session.keyIndex;
    plain.tune(options.keepAlive);
    encrypted.tune(options.keepAlive);
    if (options.proxyProtocol !== null) {
      // -e: sealed as the first plaintext (a C -d passes it on unchanged); -d: written to the target before anything opened.
      const header = proxyHeader(options.proxyProtocol, accepted.ends());
      if (options.mode === 'encrypt') encrypted.write(session.sealer.seal(header), null);
      else plain.write(header, null);
    }
    piping = true;
    // Read only now: in -d, bytes can keep arriving after the handshake while the target connects.
    await pipeChannels(plain, encrypted, session, tally, done.leftover());
  } catch (err) {
    // A handshake that succeeded for a connection that failed anyway (its target refused): wipe its keys now.
    if (!piping) handshaking?.then((done) => disposeSession(done.session), ignoreLateError);
    accepted.destroy();
    target.abandon(); // a connect still under way holds no descriptor past the failure
    connecting.then((channel) => channel.destroy(), ignoreLateError);
    throw err;
  }
}
