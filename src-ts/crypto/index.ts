// Owns the public packet API of spiped-native: PacketSealer / PacketOpener (argument
// validation, counter-exhaustion and fail-for-ever rules, identical for every backend)
// and cryptoBackend(). The per-packet crypto is delegated to the live backend chosen
// by native.ts (Rust addon, or node:crypto).
import {
  BadPacketError,
  DisposedError,
  KEY_LEN,
  MAX_COUNTER,
  MAX_PAYLOAD,
  PACKET_LEN,
  type CryptoBackendInfo,
  type OpenerCore,
  type PacketBackend,
  type SealerCore,
} from './core.js';
import { liveBackend } from './native.js';

export { PACKET_LEN, MAX_PAYLOAD, MAX_COUNTER, MAX_PACKET_NUMBER, BadPacketError, DisposedError } from './core.js';
export type { BadPacketReason, CryptoBackendInfo, CpuFeatures, NativeKernels, PacketBackend, SealerCore, OpenerCore } from './core.js';

/** Extra constructor options, mainly for tests and benchmarks. */
export interface PacketCodecOptions {
  /** Use this backend instead of the live one (e.g. nodeCryptoBackend from 'spiped-native/crypto/node-backend'). */
  backend?: PacketBackend;
}

/**
 * TypeError unless `v` is a Uint8Array. A view backed by a SharedArrayBuffer is refused
 * (TypeError) by the backend that would read it: the native binding checks the backing
 * store itself, the node:crypto backend checks in JS (reading `.buffer` here would cost
 * the native path ~35 ns per call at 1 KiB).
 */
function checkBytes(v: unknown, what: string): asserts v is Uint8Array {
  if (!(v instanceof Uint8Array)) throw new TypeError(`${what} must be a Uint8Array or Buffer`);
}

function checkKey(v: unknown, what: string): asserts v is Uint8Array {
  checkBytes(v, what);
  if (v.length !== KEY_LEN) throw new TypeError(`${what} must be ${KEY_LEN} bytes, got ${v.length}`);
}

function checkCounter(v: unknown): bigint {
  if (v === undefined) return 0n;
  if (typeof v !== 'bigint') throw new TypeError('firstPacket must be a bigint');
  if (v < 0n || v > MAX_COUNTER) throw new RangeError('firstPacket must be in 0 .. 2^64-1');
  return v;
}

function checkOffset(out: Uint8Array, v: unknown): number {
  if (v === undefined) return 0;
  if (typeof v !== 'number') throw new TypeError('outOffset must be a number');
  if (!Number.isInteger(v) || v < 0 || v > out.length) {
    throw new RangeError(`outOffset must be an integer in 0 .. ${out.length}, got ${v}`);
  }
  return v;
}

/** Packets a codec may still process from packet number `next` without passing 2^64-2, capped at 2^53-1 (exact below that). */
function roomFrom(next: bigint): number {
  const room = MAX_COUNTER - next;
  return room > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(room);
}

/** The room left once `packets` more are processed, from `room` (which may underestimate; the exact figure is reread from `core` when it runs short); RangeError if the counter would pass 2^64-2. */
function spendRoom(room: number, packets: number, core: { readonly nextPacket: bigint }): number {
  if (packets <= room) return room - packets;
  const next = core.nextPacket;
  const exact = roomFrom(next);
  if (packets > exact) {
    throw new RangeError(`packet counter exhausted: ${packets} packet(s) from #${next} would pass 2^64-2`);
  }
  return exact - packets;
}

function pickBackend(options: PacketCodecOptions | undefined): PacketBackend {
  return options?.backend ?? liveBackend().backend;
}

/** Encrypts and authenticates one direction of a spiped connection, packet by packet. */
export class PacketSealer {
  readonly #core: SealerCore;
  /** Packets left before the counter would pass 2^64-2 (plain numbers: no BigInt work and no native call per seal). */
  #room: number;
  /** nextPacket as it was at dispose(); undefined while live. */
  #disposedAt: bigint | undefined;

  /** 32-byte AES-256 and HMAC-SHA256 keys; firstPacket (default 0n) is the first packet number. */
  constructor(encKey: Uint8Array, macKey: Uint8Array, firstPacket?: bigint, options?: PacketCodecOptions) {
    checkKey(encKey, 'encKey');
    checkKey(macKey, 'macKey');
    const first = checkCounter(firstPacket);
    this.#core = pickBackend(options).createSealer(encKey, macKey, first);
    this.#room = roomFrom(first);
  }

  /** Packet number the next sealed packet will carry (frozen at dispose()). */
  get nextPacket(): bigint {
    return this.#disposedAt ?? this.#core.nextPacket;
  }

  /** Wipes and frees the keys now; idempotent; every later seal/sealInto throws DisposedError (code EDISPOSED). */
  dispose(): void {
    if (this.#disposedAt !== undefined) return;
    this.#disposedAt = this.#core.nextPacket;
    this.#core.dispose();
  }

  /** Seals data into ceil(len/1024) packets of 1060 bytes (empty in, empty out); RangeError if the counter would pass 2^64-2. */
  seal(data: Uint8Array): Buffer {
    if (this.#disposedAt !== undefined) throw new DisposedError('PacketSealer');
    checkBytes(data, 'data');
    if (data.length === 0) return Buffer.alloc(0);
    const packets = Math.ceil(data.length / MAX_PAYLOAD);
    this.#room = spendRoom(this.#room, packets, this.#core);
    return this.#core.seal(data);
  }

  /** Seals data into out at outOffset (needs ceil(len/1024)*1060 bytes of room) and returns the bytes written. */
  sealInto(data: Uint8Array, out: Uint8Array, outOffset?: number): number {
    if (this.#disposedAt !== undefined) throw new DisposedError('PacketSealer');
    checkBytes(data, 'data');
    checkBytes(out, 'out');
    const off = checkOffset(out, outOffset);
    const packets = Math.ceil(data.length / MAX_PAYLOAD);
    const need = packets * PACKET_LEN;
    if (out.length - off < need) throw new RangeError(`out too small: need ${need} bytes at offset ${off}, have ${out.length - off}`);
    if (packets === 0) return 0;
    this.#room = spendRoom(this.#room, packets, this.#core);
    return this.#core.sealInto(data, out, off);
  }
}

/** Verifies and decrypts one direction of a spiped connection; after any bad input it refuses everything. */
export class PacketOpener {
  readonly #core: OpenerCore;
  /** Packets left before the counter would pass 2^64-2 (plain numbers: no BigInt work and no native call per open). */
  #room: number;
  #failed = false;
  /** nextPacket as it was at dispose(); undefined while live. */
  #disposedAt: bigint | undefined;

  /** 32-byte AES-256 and HMAC-SHA256 keys; firstPacket (default 0n) is the packet number expected first. */
  constructor(encKey: Uint8Array, macKey: Uint8Array, firstPacket?: bigint, options?: PacketCodecOptions) {
    checkKey(encKey, 'encKey');
    checkKey(macKey, 'macKey');
    const first = checkCounter(firstPacket);
    this.#core = pickBackend(options).createOpener(encKey, macKey, first);
    this.#room = roomFrom(first);
  }

  /** Packet number the next packet must carry (frozen at dispose()). */
  get nextPacket(): bigint {
    return this.#disposedAt ?? this.#core.nextPacket;
  }

  /** Wipes and frees the keys now; idempotent; every later open/openInto throws DisposedError (code EDISPOSED). */
  dispose(): void {
    if (this.#disposedAt !== undefined) return;
    this.#disposedAt = this.#core.nextPacket;
    this.#core.dispose();
  }

  /** True once a bad packet was seen; every later open throws. */
  get failed(): boolean {
    return this.#failed;
  }

  /** Opens a multiple of 1060 bytes and returns the payloads; BadPacketError (code EBADPACKET) on a bad MAC, length or size, and for ever after. */
  open(packets: Uint8Array): Buffer {
    if (this.#disposedAt !== undefined) throw new DisposedError('PacketOpener');
    checkBytes(packets, 'packets');
    const count = this.#precheck(packets);
    if (count === 0) return Buffer.alloc(0);
    try {
      return this.#core.open(packets);
    } catch (e) {
      return this.#fail(e);
    }
  }

  /** Like open() but writes into out at outOffset (needs (len/1060)*1024 bytes of room); returns the bytes written. On error out may hold earlier packets' payloads. */
  openInto(packets: Uint8Array, out: Uint8Array, outOffset?: number): number {
    if (this.#disposedAt !== undefined) throw new DisposedError('PacketOpener');
    checkBytes(packets, 'packets');
    checkBytes(out, 'out');
    const off = checkOffset(out, outOffset);
    if (this.#failed) throw new BadPacketError('poisoned');
    const need = Math.floor(packets.length / PACKET_LEN) * MAX_PAYLOAD;
    if (out.length - off < need) throw new RangeError(`out too small: need ${need} bytes at offset ${off}, have ${out.length - off}`);
    const count = this.#precheck(packets);
    if (count === 0) return 0;
    try {
      return this.#core.openInto(packets, out, off);
    } catch (e) {
      return this.#fail(e);
    }
  }

  /** Checks poisoning, whole-packet size and counter room; returns the packet count. */
  #precheck(packets: Uint8Array): number {
    if (this.#failed) throw new BadPacketError('poisoned');
    if (packets.length % PACKET_LEN !== 0) {
      this.#failed = true;
      throw new BadPacketError('size', `${packets.length} bytes`);
    }
    const count = packets.length / PACKET_LEN;
    this.#room = spendRoom(this.#room, count, this.#core);
    return count;
  }

  #fail(e: unknown): never {
    if (e instanceof BadPacketError || (e as NodeJS.ErrnoException | null)?.code === 'EBADPACKET') {
      this.#failed = true;
      if (!(e instanceof BadPacketError)) throw new BadPacketError('packet', undefined, { cause: e });
    }
    throw e;
  }
}

/** Which backend PacketSealer/PacketOpener use by default, its CPU features and why it was chosen. */
export function cryptoBackend(): CryptoBackendInfo {
  return { ...liveBackend().info };
}

/** The most bytes pbkdf2Sha256() derives (the handshake needs 64 and 128). */
export const MAX_DERIVED_LEN = 1024;

/** One-iteration PBKDF2-HMAC-SHA256 (the handshake's dk_1 and dk_2) of `length` bytes (1 to 1024), on the live backend. */
export function pbkdf2Sha256(key: Uint8Array, salt: Uint8Array, length: number, options?: PacketCodecOptions): Buffer {
  checkBytes(key, 'key');
  checkBytes(salt, 'salt');
  if (typeof length !== 'number') throw new TypeError('length must be a number');
  if (!Number.isInteger(length) || length < 1 || length > MAX_DERIVED_LEN) {
    throw new RangeError(`length must be 1 to ${MAX_DERIVED_LEN}, got ${length}`);
  }
  return pickBackend(options).pbkdf2Sha256(key, salt, length);
}

/** HMAC-SHA256(key, data), 32 bytes (the handshake's DH message MACs), on the live backend. */
export function hmacSha256(key: Uint8Array, data: Uint8Array, options?: PacketCodecOptions): Buffer {
  checkBytes(key, 'key');
  checkBytes(data, 'data');
  return pickBackend(options).hmacSha256(key, data);
}
