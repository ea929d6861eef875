// Owns the pure node:crypto packet backend (the fallback when the native addon is
// unavailable): AES-256-CTR keystream made by ONE long-lived AES-256-ECB cipher over
// all counter blocks of a group of packets, XORed in 32-bit words, and HMAC-SHA256
// built from a one-shot node:crypto SHA-256 of (ipad-key || message) plus the single
// outer compression done here from the precomputed opad state (that one block costs
// less in JS than another node:crypto call). dispose() zeroes every copy of key
// material held here and ends the ECB cipher, which frees (and OpenSSL cleanses) its
// key schedule.
import * as nodeCrypto from 'node:crypto';
import type { Cipher } from 'node:crypto';
import { isSharedArrayBuffer } from 'node:util/types';
import {
  BadPacketError,
  ENCRYPTED_LEN,
  KEY_LEN,
  MAC_LEN,
  MAX_PAYLOAD,
  PACKET_LEN,
  type OpenerCore,
  type PacketBackend,
  type SealerCore,
  DisposedError,
} from './core.js';

/** AES blocks of keystream per packet: ceil(1028 / 16). */
const BLOCKS_PER_PACKET = 65;
/** Keystream bytes generated per packet (65 * 16; the last 12 are unused). */
const KS_PER_PACKET = BLOCKS_PER_PACKET * 16;
/** Packets whose counter blocks go through one ECB update() call. */
const GROUP = 64;
/** Byte offset of the encrypted part inside the HMAC scratch buffer (after the ipad block). */
const ENC_OFF = 64;
/** Byte offset of the be64 packet number inside the HMAC scratch buffer. */
const NUM_OFF = ENC_OFF + ENCRYPTED_LEN;
/** Word offsets of the above (both are multiples of 4). */
const ENC_W = ENC_OFF / 4;
const NUM_W = NUM_OFF / 4;
const ENC_WORDS = ENCRYPTED_LEN / 4;

const oneShotHash: ((alg: string, data: Uint8Array, enc: 'buffer') => Buffer) | undefined =
  typeof nodeCrypto.hash === 'function' ? (nodeCrypto.hash as (a: string, d: Uint8Array, e: 'buffer') => Buffer) : undefined;

const SHA256_K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const SHA256_IV = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
/** Message schedule of sha256Compress; W[0..15] is the block, filled by the caller. */
const W = new Int32Array(64);

/** One SHA-256 compression of the block already in W[0..15] into state `st` (8 words). */
function sha256Compress(st: Int32Array): void {
  const k = SHA256_K;
  for (let i = 16; i < 64; i++) {
    const a = W[i - 15] as number;
    const b = W[i - 2] as number;
    const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
    const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
    W[i] = ((W[i - 16] as number) + s0 + (W[i - 7] as number) + s1) | 0;
  }
  let a = st[0] as number, b = st[1] as number, c = st[2] as number, d = st[3] as number;
  let e = st[4] as number, f = st[5] as number, g = st[6] as number, h = st[7] as number;
  for (let i = 0; i < 64; i++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (h + S1 + ((e & f) ^ (~e & g)) + (k[i] as number) + (W[i] as number)) | 0;
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    h = g; g = f; f = e; e = (d + t1) | 0;
    d = c; c = b; b = a; a = (t1 + t2) | 0;
  }
  st[0] = ((st[0] as number) + a) | 0; st[1] = ((st[1] as number) + b) | 0;
  st[2] = ((st[2] as number) + c) | 0; st[3] = ((st[3] as number) + d) | 0;
  st[4] = ((st[4] as number) + e) | 0; st[5] = ((st[5] as number) + f) | 0;
  st[6] = ((st[6] as number) + g) | 0; st[7] = ((st[7] as number) + h) | 0;
}

/** TypeError if `v` is backed by a SharedArrayBuffer (another thread could change the bytes between the MAC check and the decryption). */
function refuseShared(v: Uint8Array, what: string): void {
  const backing = v.buffer;
  // instanceof is the common case; isSharedArrayBuffer also catches other realms' SABs.
  if (!(backing instanceof ArrayBuffer) && isSharedArrayBuffer(backing)) {
    throw new TypeError(`${what} must not be backed by a SharedArrayBuffer`);
  }
}

/** Every buffer a PacketKeys holds key material in, by owner (read only by heldKeyMaterial). */
const keyMaterial = new WeakMap<object, readonly (Uint8Array | Int32Array)[]>();

/** For tests: the buffers holding key material of a node:crypto core (all zero once disposed), or undefined. */
export function heldKeyMaterial(core: SealerCore | OpenerCore): readonly (Uint8Array | Int32Array)[] | undefined {
  return keyMaterial.get(core);
}

/** Per-key machinery shared by the sealer and the opener of one direction. */
class PacketKeys {
  readonly #ecb: Cipher;
  readonly #macKey: Buffer;
  /** ipad-key block (64) || encrypted part (1028) || be64(n) (8): the HMAC inner message. */
  readonly #scratch: Buffer;
  readonly #scratch32: Int32Array;
  /** SHA-256 state after the opad-key block. */
  readonly #outerState: Int32Array;
  /** Working state for the outer compression. */
  readonly #st = new Int32Array(8);
  /** The last computed tag (reused; callers copy it out). */
  readonly #tag: Buffer = Buffer.alloc(MAC_LEN);
  /** Counter blocks be64(n) || be64(i) for a group of packets. */
  readonly #ctr: Buffer;
  readonly #ctr32: Int32Array;

  /** Takes private copies of both 32-byte keys; TypeError for SharedArrayBuffer-backed keys. */
  constructor(encKey: Uint8Array, macKey: Uint8Array) {
    refuseShared(encKey, 'encKey');
    refuseShared(macKey, 'macKey');
    this.#ecb = nodeCrypto.createCipheriv('aes-256-ecb', encKey, null);
    this.#ecb.setAutoPadding(false);
    this.#macKey = Buffer.from(macKey);
    this.#scratch = Buffer.alloc(NUM_OFF + 8);
    this.#scratch32 = new Int32Array(this.#scratch.buffer, this.#scratch.byteOffset, this.#scratch.length >> 2);
    const opad = Buffer.alloc(64);
    for (let i = 0; i < 64; i++) {
      const k = i < KEY_LEN ? (macKey[i] as number) : 0;
      this.#scratch[i] = k ^ 0x36;
      opad[i] = k ^ 0x5c;
    }
    for (let i = 0; i < 16; i++) W[i] = opad.readInt32BE(i * 4);
    this.#outerState = new Int32Array(SHA256_IV);
    sha256Compress(this.#outerState);
    opad.fill(0);
    W.fill(0);
    this.#ctr = Buffer.alloc(GROUP * KS_PER_PACKET);
    this.#ctr32 = new Int32Array(this.#ctr.buffer, this.#ctr.byteOffset, this.#ctr.length >> 2);
    for (let p = 0; p < GROUP; p++) {
      for (let b = 0; b < BLOCKS_PER_PACKET; b++) this.#ctr[p * KS_PER_PACKET + b * 16 + 15] = b;
    }
  }

  /** The buffers holding key material: the MAC key, the ipad block, the opad state and its working copies. */
  secrets(): readonly (Uint8Array | Int32Array)[] {
    return [this.#macKey, this.#scratch, this.#outerState, this.#st, this.#tag];
  }

  /** Zeroes every copy of key material and ends the ECB cipher (freeing its key schedule). */
  wipe(): void {
    for (const b of this.secrets()) b.fill(0);
    W.fill(0);
    try {
      this.#ecb.final();
    } catch {
      // Already ended: nothing left to free.
    }
  }

  /** Returns the 32-bit keystream words for packets first .. first+k-1 (k <= GROUP), packet j at word j*260. */
  keystream(first: bigint, k: number): Int32Array {
    const s = this.#scratch;
    const s32 = this.#scratch32;
    const c32 = this.#ctr32;
    for (let j = 0; j < k; j++) {
      s.writeBigUInt64BE(first + BigInt(j), NUM_OFF);
      const w0 = s32[NUM_W] as number;
      const w1 = s32[NUM_W + 1] as number;
      const base = (j * KS_PER_PACKET) >> 2;
      for (let b = 0; b < BLOCKS_PER_PACKET; b++) {
        c32[base + b * 4] = w0;
        c32[base + b * 4 + 1] = w1;
      }
    }
    let ks = this.#ecb.update(this.#ctr.subarray(0, k * KS_PER_PACKET));
    if ((ks.byteOffset & 3) !== 0) ks = Buffer.from(ks); // never seen in practice; keeps the word view legal
    return new Int32Array(ks.buffer, ks.byteOffset, ks.length >> 2);
  }

  /** The scratch buffer: callers put the encrypted part at ENC_OFF and be64(n) at NUM_OFF. */
  get scratch(): Buffer {
    return this.#scratch;
  }

  /** XORs the 1028 bytes at scratch[ENC_OFF..] with packet j's keystream from `ks`. */
  xorScratch(ks: Int32Array, j: number): void {
    const s32 = this.#scratch32;
    const kb = j * (KS_PER_PACKET >> 2);
    for (let i = 0; i < ENC_WORDS; i++) s32[ENC_W + i] = (s32[ENC_W + i] as number) ^ (ks[kb + i] as number);
  }

  /**
   * HMAC-SHA256(macKey, scratch[ENC_OFF .. NUM_OFF+8]) after the caller wrote be64(n) at
   * NUM_OFF. Returns a reused 32-byte buffer, valid until the next call.
   */
  macScratch(): Buffer {
    if (oneShotHash === undefined) {
      return nodeCrypto.createHmac('sha256', this.#macKey).update(this.#scratch.subarray(ENC_OFF)).digest();
    }
    const inner = oneShotHash('sha256', this.#scratch, 'buffer');
    for (let i = 0; i < 8; i++) W[i] = inner.readInt32BE(i * 4);
    W[8] = 0x80000000 | 0;
    W.fill(0, 9, 15);
    W[15] = (64 + MAC_LEN) * 8;
    const st = this.#st;
    st.set(this.#outerState);
    sha256Compress(st);
    const tag = this.#tag;
    for (let i = 0; i < 8; i++) tag.writeInt32BE(st[i] as number, i * 4);
    return tag;
  }
}

/** node:crypto sealer core: seals consecutive packets from a starting packet number. */
export class NodeSealerCore implements SealerCore {
  readonly #keys: PacketKeys;
  #next: bigint;
  #disposed = false;

  /** Keys must be 32 bytes and firstPacket a valid counter (index.ts checks). */
  constructor(encKey: Uint8Array, macKey: Uint8Array, firstPacket: bigint) {
    this.#keys = new PacketKeys(encKey, macKey);
    this.#next = firstPacket;
    keyMaterial.set(this, this.#keys.secrets());
  }

  /** Wipes the keys now; idempotent; later seals throw DisposedError. */
  dispose(): void {
    this.#disposed = true;
    this.#keys.wipe();
  }

  /** Packet number of the next sealed packet. */
  get nextPacket(): bigint {
    return this.#next;
  }

  /** Seals data into ceil(len/1024) fresh packets. */
  seal(data: Uint8Array): Buffer {
    const out = Buffer.allocUnsafe(Math.ceil(data.length / MAX_PAYLOAD) * PACKET_LEN);
    this.sealInto(data, out, 0);
    return out;
  }

  /** Seals data into out at outOffset; returns bytes written. */
  sealInto(data: Uint8Array, out: Uint8Array, outOffset: number): number {
    if (this.#disposed) throw new DisposedError('sealer');
    refuseShared(data, 'data');
    refuseShared(out, 'out');
    const total = Math.ceil(data.length / MAX_PAYLOAD);
    const keys = this.#keys;
    const s = keys.scratch;
    let n = this.#next;
    let o = outOffset;
    let src = 0;
    for (let done = 0; done < total; ) {
      const k = Math.min(GROUP, total - done);
      const ks = keys.keystream(n, k);
      for (let j = 0; j < k; j++) {
        const len = Math.min(MAX_PAYLOAD, data.length - src);
        s.set(data.subarray(src, src + len), ENC_OFF);
        if (len < MAX_PAYLOAD) s.fill(0, ENC_OFF + len, ENC_OFF + MAX_PAYLOAD);
        s.writeUInt32BE(len, ENC_OFF + MAX_PAYLOAD);
        keys.xorScratch(ks, j);
        s.writeBigUInt64BE(n + BigInt(j), NUM_OFF);
        const tag = keys.macScratch();
        out.set(s.subarray(ENC_OFF, NUM_OFF), o);
        out.set(tag, o + ENCRYPTED_LEN);
        o += PACKET_LEN;
        src += len;
      }
      n += BigInt(k);
      done += k;
    }
    this.#next = n;
    return o - outOffset;
  }
}

/** node:crypto opener core: verifies and decrypts consecutive packets; fails for ever after a bad one. */
export class NodeOpenerCore implements OpenerCore {
  readonly #keys: PacketKeys;
  #next: bigint;
  #failed = false;
  #disposed = false;

  /** Keys must be 32 bytes and firstPacket a valid counter (index.ts checks). */
  constructor(encKey: Uint8Array, macKey: Uint8Array, firstPacket: bigint) {
    this.#keys = new PacketKeys(encKey, macKey);
    this.#next = firstPacket;
    keyMaterial.set(this, this.#keys.secrets());
  }

  /** Wipes the keys now; idempotent; later opens throw DisposedError. */
  dispose(): void {
    this.#disposed = true;
    this.#keys.wipe();
  }

  /** Packet number the next packet must carry. */
  get nextPacket(): bigint {
    return this.#next;
  }

  /** Opens whole packets; returns their concatenated payloads. */
  open(packets: Uint8Array): Buffer {
    const cap = (packets.length / PACKET_LEN) * MAX_PAYLOAD;
    const out = Buffer.allocUnsafe(cap);
    const n = this.openInto(packets, out, 0);
    if (n === cap) return out;
    return n * 2 >= cap ? out.subarray(0, n) : Buffer.from(out.subarray(0, n));
  }

  /**
   * Opens whole packets into out at outOffset; returns bytes written. On a bad packet it
   * throws BadPacketError; out may then hold payloads of earlier authentic packets of the
   * batch, never a byte of the rejected one, and the counter does not move.
   */
  openInto(packets: Uint8Array, out: Uint8Array, outOffset: number): number {
    if (this.#disposed) throw new DisposedError('opener');
    refuseShared(packets, 'packets');
    refuseShared(out, 'out');
    if (this.#failed) throw new BadPacketError('poisoned');
    if (packets.length % PACKET_LEN !== 0) {
      this.#failed = true;
      throw new BadPacketError('size', `${packets.length} bytes`);
    }
    const total = packets.length / PACKET_LEN;
    const keys = this.#keys;
    const s = keys.scratch;
    let n = this.#next;
    let o = outOffset;
    let p = 0;
    for (let done = 0; done < total; ) {
      const k = Math.min(GROUP, total - done);
      const ks = keys.keystream(n, k);
      for (let j = 0; j < k; j++) {
        s.set(packets.subarray(p, p + ENCRYPTED_LEN), ENC_OFF);
        s.writeBigUInt64BE(n + BigInt(j), NUM_OFF);
        const tag = keys.macScratch();
        if (!nodeCrypto.timingSafeEqual(tag, packets.subarray(p + ENCRYPTED_LEN, p + PACKET_LEN))) {
          this.#failed = true;
          throw new BadPacketError('packet');
        }
        keys.xorScratch(ks, j);
        const len = s.readUInt32BE(ENC_OFF + MAX_PAYLOAD);
        if (len === 0 || len > MAX_PAYLOAD) {
          this.#failed = true;
          throw new BadPacketError('packet');
        }
        out.set(s.subarray(ENC_OFF, ENC_OFF + len), o);
        o += len;
        p += PACKET_LEN;
      }
      n += BigInt(k);
      done += k;
    }
    this.#next = n;
    return o - outOffset;
  }
}

/** The node:crypto backend object. */
export const nodeCryptoBackend: PacketBackend = {
  name: 'node-crypto',
  createSealer: (encKey, macKey, firstPacket) => new NodeSealerCore(encKey, macKey, firstPacket),
  createOpener: (encKey, macKey, firstPacket) => new NodeOpenerCore(encKey, macKey, firstPacket),
  pbkdf2Sha256: (key, salt, length) => nodeCrypto.pbkdf2Sync(key, salt, 1, length, 'sha256'),
  hmacSha256: (key, data) => nodeCrypto.createHmac('sha256', key).update(data).digest(),
};
