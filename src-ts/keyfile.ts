// Owns the shared secret: K = SHA256(every byte of the key file), from a path,
// from standard input ("-"), or from bytes the caller already holds. A file or
// stdin is hashed as a stream, one chunk at a time, each chunk wiped once hashed:
// the key file is never held whole (so `-k /dev/zero` reads for ever in constant
// memory, as the reference does).

import { createHash, type Hash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { SpipedError } from './errors.js';

/** Where a key comes from: a key file's path, "-" for stdin, or the key file's bytes. */
export type KeySource = string | Uint8Array;

/** Bytes read from a key file per read(2). */
const KEY_CHUNK = 64 * 1024;

/** Returns K = SHA256(keyFileBytes) as a fresh 32-byte Buffer. */
export function hashKeyBytes(keyFileBytes: Uint8Array): Buffer {
  return createHash('sha256').update(keyFileBytes).digest();
}

/** Feeds every byte of the file at `path` into `hash` through one buffer of ours, wiped at the end. */
async function hashFile(path: string, hash: Hash): Promise<void> {
  const file = await open(path, 'r');
  const chunk = Buffer.alloc(KEY_CHUNK); // outside the shared pool, so that wiping it wipes the only copy
  try {
    for (;;) {
      const { bytesRead } = await file.read(chunk, 0, KEY_CHUNK, null);
      if (bytesRead === 0) return;
      hash.update(chunk.subarray(0, bytesRead));
    }
  } finally {
    chunk.fill(0);
    await file.close();
  }
}

/** Feeds every byte of standard input into `hash`, wiping each chunk once hashed. */
async function hashStdin(hash: Hash): Promise<void> {
  for await (const part of process.stdin) {
    const chunk = part as Buffer;
    hash.update(chunk);
    chunk.fill(0);
  }
}

/** Loads `source` (path, "-" or bytes) and returns K; a file or stdin is streamed, never held whole; throws EKEYFILE. */
export async function loadKey(source: KeySource): Promise<Buffer> {
  if (typeof source !== 'string') return hashKeyBytes(source);
  const hash = createHash('sha256');
  try {
    if (source === '-') await hashStdin(hash);
    else await hashFile(source, hash);
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    throw new SpipedError('EKEYFILE', `Cannot read key file ${source}: ${detail}`, { cause: err, keyFile: source });
  }
  return hash.digest();
}

/** Loads every source in order (see loadKey); on any failure wipes the keys already loaded and throws EKEYFILE. */
export function loadKeys(sources: readonly KeySource[]): Promise<Buffer[]> {
  return loadEach(sources, (source) => loadKey(source));
}

/** Calls `load` for each item in order and collects the keys; on any failure wipes the keys already loaded and rethrows. */
export async function loadEach<T>(items: readonly T[], load: (item: T, index: number) => Promise<Buffer>): Promise<Buffer[]> {
  const keys: Buffer[] = [];
  try {
    for (const [index, item] of items.entries()) keys.push(await load(item, index));
    return keys;
  } catch (err) {
    for (const key of keys) key.fill(0);
    throw err;
  }
}
