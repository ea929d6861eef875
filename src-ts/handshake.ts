// Owns the spiped handshake (PROTOCOL.md "Handshake"): nonces, dk_1, the
// authenticated Diffie-Hellman values in group 14, dk_2 and the four packet
// keys, in both roles. The pure steps are exported for tests and library users;
// `handshake()` runs them over a net.Socket, `handshakeChannel()` over a Channel.

import { type DiffieHellman, createDiffieHellman, getDiffieHellman, randomBytes, randomFillSync, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Channel } from './channel.js';
import { PacketOpener, PacketSealer, hmacSha256, pbkdf2Sha256 } from './crypto/index.js';
import { dhPoolWanted, leaseDhPool, takePooledPair } from './dh-pool.js';
import { SpipedError, peerError } from './errors.js';

/** Bytes in a nonce, a DH value, an HMAC, and a whole `y || HMAC(y)` message. */
export const NONCE_LEN = 32;
export const DH_LEN = 256;
export const MAC_LEN = 32;
export const DH_MESSAGE_LEN = DH_LEN + MAC_LEN;

/** The RFC 3526 group 14 prime, as a 256-byte big-endian Buffer. */
export const MODP14_PRIME: Buffer = getDiffieHellman('modp14').getPrime();
const PRIME_MINUS_ONE: Buffer = (() => {
  const value = Buffer.from(MODP14_PRIME);
  value[DH_LEN - 1]! -= 1; // p is odd, so no borrow
  return value;
})();

/**
 * One group-14 DiffieHellman object per process, given each exponent in turn
 * (Node is single-threaded, and each use below is synchronous). Creating one
 * validates the prime, which blocks for about 0.4 s on Node 24+ (0.3 ms on Node
 * 20), so it is created once: by prepareDiffieHellman() when a PFS server or
 * daemon starts, else on the first PFS handshake. Each use clears its exponent
 * again (see withExponent).
 */
let modp14: DiffieHellman | null = null;
const CLEARED_EXPONENT = Buffer.from([1]);

/** Creates the process's group-14 object now, so that no later handshake waits for it; idempotent. */
export function prepareDiffieHellman(): DiffieHellman {
  modp14 ??= createDiffieHellman(MODP14_PRIME, 2);
  return modp14;
}

/** For PFS daemons and servers: creates the group-14 object and, where it helps (dhPoolWanted), leases the pool of DH pairs computed ahead off the event loop (dh-pool.ts); call the returned function once the daemon or server has closed. */
export function preparePfsServer(): () => void {
  prepareDiffieHellman();
  return dhPoolWanted() ? leaseDhPool(MODP14_PRIME) : () => {};
}

/** Runs `use` with the process's group-14 object holding `exponent`, then overwrites the exponent inside OpenSSL. */
function withExponent<T>(exponent: Buffer, use: (dh: DiffieHellman) => T): T {
  const dh = prepareDiffieHellman();
  dh.setPrivateKey(exponent);
  try {
    return use(dh);
  } finally {
    dh.setPrivateKey(CLEARED_EXPONENT); // OpenSSL frees the old exponent with BN_clear_free
  }
}

/** Nonces drawn from the CSPRNG a pool at a time (one RAND_bytes call per 256 connections instead of per connection). */
const NONCE_POOL_SIZE = 256 * NONCE_LEN;
let noncePool = Buffer.alloc(0);
let noncePoolOffset = 0;

/** A fresh 32-byte nonce from the CSPRNG (a copy of its own; each pool byte is handed out once). */
export function freshNonce(): Buffer {
  if (noncePoolOffset === noncePool.length) {
    noncePool = randomBytes(NONCE_POOL_SIZE);
    noncePoolOffset = 0;
  }
  const nonce = Buffer.from(noncePool.subarray(noncePoolOffset, noncePoolOffset + NONCE_LEN));
  noncePoolOffset += NONCE_LEN;
  return nonce;
}

/** The DH value 1, as sent in fast mode (-f). */
export const DH_ONE: Buffer = (() => {
  const one = Buffer.alloc(DH_LEN);
  one[DH_LEN - 1] = 1;
  return one;
})();

/** Which side of the handshake this is: the client connects out with encrypted traffic. */
export type Role = 'client' | 'server';

/** What a side of the handshake needs to know. */
export interface HandshakeOptions {
  role: Role;
  key: Buffer | readonly Buffer[]; // K = SHA256(key file); a server may hold several (tried in turn, see matchDhMessage), a client exactly one
  fast: boolean; // -f: send y = 1, no forward secrecy
  requirePfs: boolean; // -g: refuse a peer's y = 1
  timeoutMs: number; // the whole handshake must finish within this (0 = no limit)
}

/** The four packet keys of a session, split from dk_2. */
export interface SessionKeys {
  encC: Buffer;
  macC: Buffer;
  encS: Buffer;
  macS: Buffer;
}

/** A finished handshake: this side's packet coders (bytes past the handshake stay queued in the socket). */
export interface Session {
  sealer: PacketSealer;
  opener: PacketOpener;
  keyIndex: number; // which of the server's keys the peer holds (0 = the first; always 0 for a client)
}

/**
 * The Session a handshake returns: built by one constructor, so that every session has the
 * same hidden class (the packet pipe's compiled code fits them all; an object literal or a
 * spread gave sessions of several, and the pipe's code was compiled again for the next).
 */
class EstablishedSession implements Session {
  constructor(
    readonly sealer: PacketSealer,
    readonly opener: PacketOpener,
    readonly keyIndex: number,
  ) {}
}

/** The most keys a server tries per connection (each costs an unauthenticated peer one more PBKDF2 of two HMAC blocks). */
export const MAX_SERVER_KEYS = 16;

/** The keys of `options.key` as a list; throws TypeError for none, more than MAX_SERVER_KEYS, or several on a client. */
export function keyList(key: Buffer | readonly Buffer[], role: Role): readonly Buffer[] {
  const keys: readonly Buffer[] = Buffer.isBuffer(key) ? [key] : (key as readonly Buffer[]);
  if (keys.length === 0) throw new TypeError('at least one key is needed');
  if (role === 'client' && keys.length !== 1) throw new TypeError('a client takes exactly one key');
  if (keys.length > MAX_SERVER_KEYS) throw new TypeError(`at most ${MAX_SERVER_KEYS} keys`);
  return keys;
}

/** A side's own Diffie-Hellman contribution: the value it sends and its secret exponent (none in fast mode). */
export interface DhContribution {
  y: Buffer;
  exponent: Buffer | null;
}

/** dk_1 = PBKDF2-SHA256(K, nonce_C || nonce_S, 1, 64), split into dhmac_C and dhmac_S. */
export function deriveDhmacKeys(key: Buffer, nonceC: Buffer, nonceS: Buffer): { dhmacC: Buffer; dhmacS: Buffer } {
  const dk1 = pbkdf2Sha256(key, Buffer.concat([nonceC, nonceS]), 64);
  return { dhmacC: dk1.subarray(0, 32), dhmacS: dk1.subarray(32, 64) };
}

/** Picks x = 2^258 + 256 random bits and y = 2^x mod p (from the pool when it has a pair ready); in fast mode y = 1 and no exponent. */
export function createDhContribution(fast: boolean): DhContribution {
  if (fast) return { y: DH_ONE, exponent: null };
  const pooled = takePooledPair();
  if (pooled !== null) return pooled;
  const exponent = Buffer.alloc(33); // outside the shared pool, so that wiping it wipes the only copy
  exponent[0] = 0x04; // 2^258
  randomFillSync(exponent, 1);
  // generateKeys() keeps a private key already set and derives y = 2^x mod p from it.
  return { y: leftPad(withExponent(exponent, (dh) => dh.generateKeys())), exponent };
}

/** Returns `y || HMAC-SHA256(dhmac, y)`, the 288-byte DH message. */
export function authenticateDhValue(dhmac: Buffer, y: Buffer): Buffer {
  return Buffer.concat([y, hmacSha256(dhmac, y)]);
}

/** Checks a received `y || h` (MAC in constant time, y < p, y != 1 under -g) and returns y; throws EHANDSHAKE. */
export function verifyDhMessage(dhmac: Buffer, message: Buffer, requirePfs: boolean): Buffer {
  if (matchDhMessage([dhmac], message) < 0) {
    throw peerError('EHANDSHAKE', 'Handshake failed: the peer does not have the same key', { reason: 'bad_mac' });
  }
  return checkDhValue(message.subarray(0, DH_LEN), requirePfs);
}

/**
 * The index of the first of `dhmacs` under which `message` (y || h) carries a valid MAC, or -1.
 * Every candidate is computed and compared in constant time, with no early exit, so how long
 * it takes says nothing about which key (if any) matched.
 */
export function matchDhMessage(dhmacs: readonly Buffer[], message: Buffer): number {
  if (message.length !== DH_MESSAGE_LEN) throw peerError('EHANDSHAKE', 'DH message has the wrong length', { reason: 'bad_mac' });
  const y = message.subarray(0, DH_LEN);
  const mac = message.subarray(DH_LEN);
  let matched = -1;
  for (let i = 0; i < dhmacs.length; i++) {
    const expected = hmacSha256(dhmacs[i]!, y);
    const equal = timingSafeEqual(expected, mac);
    if (equal && matched < 0) matched = i;
  }
  return matched;
}

/** Checks an authenticated peer's y (y < p, y != 1 under -g) and returns it; throws EHANDSHAKE. */
export function checkDhValue(y: Buffer, requirePfs: boolean): Buffer {
  if (Buffer.compare(y, MODP14_PRIME) >= 0) {
    throw peerError('EHANDSHAKE', 'Handshake failed: DH value out of range', { reason: 'bad_dh_value' });
  }
  if (requirePfs && y.equals(DH_ONE)) {
    throw peerError('EHANDSHAKE', 'Handshake failed: the peer does not offer forward secrecy (-g)', { reason: 'no_forward_secrecy' });
  }
  return y;
}

/** y_SC = yPeer^x mod p (256 bytes); with no exponent (fast mode) it is 1. */
export function computeSharedValue(own: DhContribution, yPeer: Buffer): Buffer {
  if (own.exponent === null) return DH_ONE;
  // OpenSSL refuses the degenerate values 0, 1 and p-1 that the reference accepts; compute those directly.
  if (yPeer.equals(DH_ONE)) return DH_ONE;
  if (yPeer.every((byte) => byte === 0)) return Buffer.alloc(DH_LEN);
  if (yPeer.equals(PRIME_MINUS_ONE)) {
    const exponentIsEven = (own.exponent[own.exponent.length - 1]! & 1) === 0;
    return exponentIsEven ? DH_ONE : Buffer.from(PRIME_MINUS_ONE);
  }
  return leftPad(withExponent(own.exponent, (dh) => dh.computeSecret(yPeer)));
}

/** dk_2 = PBKDF2-SHA256(K, nonce_C || nonce_S || y_SC, 1, 128), split E_C || H_C || E_S || H_S. */
export function deriveSessionKeys(key: Buffer, nonceC: Buffer, nonceS: Buffer, ySC: Buffer): SessionKeys {
  const salt = Buffer.concat([nonceC, nonceS, ySC]);
  const dk2 = pbkdf2Sha256(key, salt, 128);
  salt.fill(0); // it holds the shared secret y_SC
  return {
    encC: dk2.subarray(0, 32),
    macC: dk2.subarray(32, 64),
    encS: dk2.subarray(64, 96),
    macS: dk2.subarray(96, 128),
  };
}

/** Builds this side's sealer (outgoing keys) and opener (incoming keys), then wipes `keys`. */
export function createPacketCoders(role: Role, keys: SessionKeys): { sealer: PacketSealer; opener: PacketOpener } {
  try {
    return role === 'client'
      ? { sealer: new PacketSealer(keys.encC, keys.macC), opener: new PacketOpener(keys.encS, keys.macS) }
      : { sealer: new PacketSealer(keys.encS, keys.macS), opener: new PacketOpener(keys.encC, keys.macC) };
  } finally {
    for (const part of [keys.encC, keys.macC, keys.encS, keys.macS]) part.fill(0);
  }
}

/** Wipes and frees a session's packet keys now (its sealer and opener refuse any later use); idempotent. */
export function disposeSession(session: Session): void {
  session.sealer.dispose();
  session.opener.dispose();
}

/** Left-pads a big-endian integer to the 256 bytes of a DH value; a shorter `value` is wiped once copied (it may be a secret). */
function leftPad(value: Buffer): Buffer {
  if (value.length === DH_LEN) return value;
  const padded = Buffer.alloc(DH_LEN);
  value.copy(padded, DH_LEN - value.length);
  value.fill(0);
  return padded;
}

/** What a handshake runs over: exact reads, plain writes, and a way to abort. */
interface HandshakeTransport {
  /** Resolves to the next `count` bytes; rejects if the peer closes first or fail() is called. */
  read(count: number): Promise<Buffer>;
  /** Sends `bytes`. */
  write(bytes: Buffer): void;
  /** Aborts a pending read (and every later one) with `err`. */
  fail(err: SpipedError): void;
  /** Stops watching the transport. */
  detach(): void;
}

/** The failures a transport reports: built once per handshake, without a stack trace (see peerError). */
function socketFailure(err: Error): SpipedError {
  return peerError('EHANDSHAKE', `Handshake failed: ${err.message}`, { cause: err, reason: 'socket_error' });
}

/**
 * A net.Socket read in paused mode (socket.read(n)), so that whatever arrives
 * beyond the handshake, and the peer's EOF, stay queued in the socket for
 * whoever reads it next (pipePackets, SecureStream).
 */
class SocketTransport implements HandshakeTransport {
  private readonly socket: Socket;
  private failure: SpipedError | null = null;
  private waiter: { count: number; resolve: (bytes: Buffer) => void; reject: (err: SpipedError) => void } | null =
    null;

  /** Starts watching `socket`. */
  constructor(socket: Socket) {
    this.socket = socket;
    socket.on('readable', this.settle);
    socket.on('end', this.onEnd);
    socket.on('error', this.onError);
    socket.on('close', this.onEnd);
    if (socket.destroyed || socket.readableEnded) this.onEnd();
  }

  read(count: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.waiter = { count, resolve, reject };
      this.settle();
    });
  }

  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  fail(err: SpipedError): void {
    this.failure ??= err;
    this.settle();
  }

  /** Unread bytes stay in the socket, which is left paused. */
  detach(): void {
    this.socket.off('readable', this.settle);
    this.socket.off('end', this.onEnd);
    this.socket.off('error', this.onError);
    this.socket.off('close', this.onEnd);
  }

  private readonly onEnd = (): void => {
    if (this.failure === null) this.fail(closedByPeer());
  };

  private readonly onError = (err: Error): void => {
    if (this.failure === null) this.fail(socketFailure(err));
  };

  private readonly settle = (): void => {
    const waiter = this.waiter;
    if (waiter === null) return;
    if (this.failure === null) {
      const bytes: Buffer | null = this.socket.read(waiter.count);
      if (bytes === null) return;
      this.waiter = null;
      if (bytes.length === waiter.count) waiter.resolve(bytes);
      else waiter.reject((this.failure = closedByPeer()));
    } else {
      this.waiter = null;
      waiter.reject(this.failure);
    }
  };
}

/** A handshake read buffers at most this much beyond what it waits for before it stops reading (the most any step reads). */
const MAX_BUFFERED = NONCE_LEN + DH_MESSAGE_LEN;

/**
 * A Channel (channel.ts): chunks are copied as they arrive; bytes beyond the
 * handshake are kept as `leftover` for the packet pipe, and from detach() on,
 * anything more that arrives is kept there too (reading stops at once) until
 * the pipe takes the channel over.
 */
class ChannelTransport implements HandshakeTransport {
  private readonly channel: Channel;
  private buffered: Buffer = Buffer.alloc(0);
  private failure: SpipedError | null = null;
  private waiter: { count: number; resolve: (bytes: Buffer) => void; reject: (err: SpipedError) => void } | null =
    null;

  /** Starts reading `channel`. */
  constructor(channel: Channel) {
    this.channel = channel;
    channel.onData = (chunk) => {
      this.buffered = this.buffered.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.buffered, chunk]);
      this.settle();
      if (this.waiter === null && this.buffered.length >= MAX_BUFFERED) channel.pause();
    };
    channel.onEnd = () => this.fail(closedByPeer());
    channel.onClose = (error) => this.fail(error === null ? closedByPeer() : socketFailure(error));
    if (channel.destroyed || channel.readEnded) this.fail(closedByPeer());
  }

  /** The bytes read beyond the handshake so far (from detach() on, until the pipe takes the channel over, more may be added). */
  get leftover(): Buffer {
    return this.buffered;
  }

  read(count: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.waiter = { count, resolve, reject };
      this.settle();
      if (this.waiter !== null) this.channel.resume();
    });
  }

  write(bytes: Buffer): void {
    this.channel.write(bytes, null);
  }

  fail(err: SpipedError): void {
    this.failure ??= err;
    this.settle();
  }

  detach(): void {
    const channel = this.channel;
    channel.onData = (chunk) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      channel.pause();
    };
    channel.onEnd = () => {};
    channel.onClose = () => {};
  }

  private settle(): void {
    const waiter = this.waiter;
    if (waiter === null) return;
    if (this.failure !== null) {
      this.waiter = null;
      waiter.reject(this.failure);
    } else if (this.buffered.length >= waiter.count) {
      this.waiter = null;
      const bytes = this.buffered.subarray(0, waiter.count);
      this.buffered = this.buffered.subarray(waiter.count);
      waiter.resolve(bytes);
    }
  }
}

/** The failure of a handshake whose peer closed first. */
function closedByPeer(): SpipedError {
  return peerError('EHANDSHAKE', 'Handshake failed: connection closed by the peer', { reason: 'peer_closed' });
}

/** Runs the handshake on `socket` as `options.role`; resolves to the session (bytes past it stay queued in the socket), rejects with EHANDSHAKE or ETIMEOUT. */
export function handshake(socket: Socket, options: HandshakeOptions): Promise<Session> {
  return handshakeOver(new SocketTransport(socket), options);
}

/** A handshake done on a Channel: the session, and `leftover()`, the bytes read past the handshake so far (more may arrive until the pipe takes the channel over, so read it then). */
export interface ChannelHandshake {
  session: Session;
  leftover: () => Buffer;
}

/** Runs the handshake on `channel` as `options.role`; resolves to the session and its leftover bytes, rejects with EHANDSHAKE or ETIMEOUT. */
export async function handshakeChannel(channel: Channel, options: HandshakeOptions): Promise<ChannelHandshake> {
  const transport = new ChannelTransport(channel);
  const session = await handshakeOver(transport, options);
  return { session, leftover: () => transport.leftover };
}

/** The handshake itself, over `reader`. */
async function handshakeOver(reader: HandshakeTransport, options: HandshakeOptions): Promise<Session> {
  const timer =
    options.timeoutMs > 0
      ? setTimeout(() => reader.fail(peerError('ETIMEOUT', 'Handshake timed out')), options.timeoutMs)
      : null;
  let own: DhContribution | null = null;
  let dhmacs: { dhmacC: Buffer; dhmacS: Buffer }[] = [];
  try {
    const keys = keyList(options.key, options.role);
    const isClient = options.role === 'client';
    const ownNonce = freshNonce();
    reader.write(ownNonce);
    let nonceC: Buffer;
    let nonceS: Buffer;
    let yPeer: Buffer;
    let keyIndex = 0;
    if (isClient) {
      // The client's DH value does not depend on the peer: computed while the server's nonce is in flight.
      own = createDhContribution(options.fast);
      nonceC = ownNonce;
      nonceS = await reader.read(NONCE_LEN);
      dhmacs = [deriveDhmacKeys(keys[0]!, nonceC, nonceS)];
      reader.write(authenticateDhValue(dhmacs[0]!.dhmacC, own.y));
      yPeer = verifyDhMessage(dhmacs[0]!.dhmacS, await reader.read(DH_MESSAGE_LEN), options.requirePfs);
    } else {
      // The server sends nothing more until the client's nonce and y_C || MAC are in, so it
      // reads both at once, and it derives dk_1 and computes its own DH value (a modexp) only
      // once y_C's MAC verified, as the reference does: an unauthenticated peer costs no modexp.
      // With several keys, each one's dk_1 is derived and tried (all of them, see matchDhMessage).
      const first = await reader.read(NONCE_LEN + DH_MESSAGE_LEN);
      nonceC = first.subarray(0, NONCE_LEN);
      nonceS = ownNonce;
      dhmacs = keys.map((key) => deriveDhmacKeys(key, nonceC, nonceS));
      const message = first.subarray(NONCE_LEN);
      keyIndex = matchDhMessage(
        dhmacs.map((pair) => pair.dhmacC),
        message,
      );
      if (keyIndex < 0) throw peerError('EHANDSHAKE', 'Handshake failed: the peer does not have the same key', { reason: 'bad_mac' });
      yPeer = checkDhValue(message.subarray(0, DH_LEN), options.requirePfs);
      own = createDhContribution(options.fast);
      reader.write(authenticateDhValue(dhmacs[keyIndex]!.dhmacS, own.y));
    }
    const ySC = computeSharedValue(own, yPeer);
    const sessionKeys = deriveSessionKeys(keys[keyIndex]!, nonceC, nonceS, ySC);
    if (ySC !== DH_ONE) ySC.fill(0); // the shared secret (DH_ONE is the shared public constant)
    const { sealer, opener } = createPacketCoders(options.role, sessionKeys);
    return new EstablishedSession(sealer, opener, keyIndex);
  } finally {
    own?.exponent?.fill(0);
    for (const pair of dhmacs) {
      pair.dhmacC.fill(0);
      pair.dhmacS.fill(0);
    }
    reader.detach();
    if (timer !== null) clearTimeout(timer);
  }
}
