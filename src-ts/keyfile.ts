// Owns the shared secret: K = SHA256(every byte of the key file), from a path,
// from standard input ("-"), or from bytes the caller already holds.

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { SpipedError } from './errors.js';

/** Where a key comes from: a key file's path, "-" for stdin, or the key file's bytes. */
export type KeySource = string | Uint8Array;

/** Returns K = SHA256(keyFileBytes) as a fresh 32-byte Buffer. */
export function hashKeyBytes(keyFileBytes: Uint8Array): Buffer {
  return createHash('sha256').update(keyFileBytes).digest();
}

/** Reads every byte of standard input. */
async function readStdin(): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of process.stdin) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

/** Reads the raw key file bytes of `source` (path, "-" or bytes) into a buffer of our own; throws EKEYFILE. */
export async function readKeyFile(source: KeySource): Promise<Buffer> {
  if (typeof source !== 'string') {
    const copy = Buffer.alloc(source.length); // not from the shared pool: it is wiped after hashing
    copy.set(source);
    return copy;
  }
  try {
    return source === '-' ? await readStdin() : await readFile(source);
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    throw new SpipedError('EKEYFILE', `Cannot read key file ${source}: ${detail}`, { cause: err });
  }
}

/** Loads `source` and returns K, wiping the raw key file bytes afterwards. */
export async function loadKey(source: KeySource): Promise<Buffer> {
  const bytes = await readKeyFile(source);
  try {
    return hashKeyBytes(bytes);
  } finally {
    bytes.fill(0);
  }
}
