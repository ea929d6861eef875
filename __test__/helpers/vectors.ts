// Owns test access to the recorded spiped 1.6.2 vectors (<repo>/test-vectors, or
// $SPIPED_VECTORS): loading them, deriving the session keys exactly as PROTOCOL.md
// says, and a naive reference packet encoder (one createCipheriv + createHmac per
// packet) used to check both backends and to craft packets with odd length fields.
import { createCipheriv, createHash, createHmac, pbkdf2Sync } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (this file is build/__test__/helpers/vectors.js once compiled). */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** Directory holding the *.json vectors: $SPIPED_VECTORS, else <repo>/test-vectors (committed); throws if absent. */
export function vectorsDir(): string {
  const dir = process.env['SPIPED_VECTORS'] || join(REPO_ROOT, 'test-vectors');
  if (!existsSync(join(dir, 'spiped-1.6.2-fast-session.json'))) {
    throw new Error(`spiped test vectors not found in ${dir} (set SPIPED_VECTORS to the directory holding spiped-1.6.2-fast-session.json)`);
  }
  return dir;
}

/** Parses one vector file from vectorsDir(). */
export function loadVector(name: string): Record<string, unknown> {
  return JSON.parse(readFileSync(join(vectorsDir(), name), 'utf8')) as Record<string, unknown>;
}

function hexField(v: Record<string, unknown>, key: string): Buffer {
  const s = v[key];
  if (typeof s !== 'string') throw new Error(`vector field ${key} missing or not a string`);
  return Buffer.from(s, 'hex');
}

/** Everything derived from the recorded -f session. */
export interface FastSession {
  keyfile: Buffer;
  /** K = SHA256(keyfile). */
  K: Buffer;
  nonceC: Buffer;
  nonceS: Buffer;
  /** y_C || h_C and y_S || h_S (288 bytes each). */
  yhC: Buffer;
  yhS: Buffer;
  dhmacC: Buffer;
  dhmacS: Buffer;
  EC: Buffer;
  HC: Buffer;
  ES: Buffer;
  HS: Buffer;
  /** The packets (whole multiples of 1060) in each direction. */
  packetsC2S: Buffer;
  packetsS2C: Buffer;
  plaintextC2S: Buffer;
  plaintextS2C: Buffer;
}

/** Loads spiped-1.6.2-fast-session.json and derives keys: dk_2 = PBKDF2(K, nonce_C||nonce_S||y_SC=1, 1, 128). */
export function loadFastSession(): FastSession {
  const v = loadVector('spiped-1.6.2-fast-session.json');
  const keyfile = hexField(v, 'keyfile_hex');
  const c2s = hexField(v, 'client_to_server_hex');
  const s2c = hexField(v, 'server_to_client_hex');
  const K = createHash('sha256').update(keyfile).digest();
  const nonceC = c2s.subarray(0, 32);
  const nonceS = s2c.subarray(0, 32);
  const dk1 = pbkdf2Sync(K, Buffer.concat([nonceC, nonceS]), 1, 64, 'sha256');
  const ySC = Buffer.alloc(256);
  ySC[255] = 1;
  const dk2 = pbkdf2Sync(K, Buffer.concat([nonceC, nonceS, ySC]), 1, 128, 'sha256');
  return {
    keyfile,
    K,
    nonceC,
    nonceS,
    yhC: c2s.subarray(32, 320),
    yhS: s2c.subarray(32, 320),
    dhmacC: dk1.subarray(0, 32),
    dhmacS: dk1.subarray(32, 64),
    EC: dk2.subarray(0, 32),
    HC: dk2.subarray(32, 64),
    ES: dk2.subarray(64, 96),
    HS: dk2.subarray(96, 128),
    packetsC2S: c2s.subarray(320),
    packetsS2C: s2c.subarray(320),
    plaintextC2S: hexField(v, 'plaintext_client_to_server_hex'),
    plaintextS2C: hexField(v, 'plaintext_server_to_client_hex'),
  };
}

/** Big-endian 8-byte encoding of n. */
export function be64(n: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(n);
  return b;
}

/**
 * Naive reference encoder of packet number n: AES-256-CTR(E, payload || zeros || be32(lengthField))
 * || HMAC-SHA256(H, encrypted || be64(n)). lengthField defaults to payload.length (1..1024 for a valid packet).
 */
export function referencePacket(E: Uint8Array, H: Uint8Array, n: bigint, payload: Uint8Array, lengthField = payload.length): Buffer {
  if (payload.length > 1024) throw new RangeError('payload over 1024 bytes');
  const padded = Buffer.alloc(1028);
  padded.set(payload, 0);
  padded.writeUInt32BE(lengthField >>> 0, 1024);
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64BE(n, 0);
  const enc = createCipheriv('aes-256-ctr', E, iv).update(padded);
  const mac = createHmac('sha256', H).update(enc).update(be64(n)).digest();
  return Buffer.concat([enc, mac]);
}

/** Reference encoding of a whole chunk from packet `first`: 1024-byte slices, one packet each. */
export function referenceSeal(E: Uint8Array, H: Uint8Array, first: bigint, data: Uint8Array): Buffer {
  const parts: Buffer[] = [];
  for (let off = 0, n = first; off < data.length; off += 1024, n++) {
    parts.push(referencePacket(E, H, n, data.subarray(off, Math.min(data.length, off + 1024))));
  }
  return Buffer.concat(parts);
}
