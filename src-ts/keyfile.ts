// Owns the shared secret: K = SHA256(every byte of the key file), from a path,
// from standard input ("-"), or from bytes the caller already holds. A file or
// stdin is hashed as a stream, read into one buffer of ours, wiped at the end:
// the key file is never held whole (so `-k /dev/zero` reads for ever in constant
// memory, as the reference does).

import { createHash, type Hash } from 'node:crypto';
import { read } from 'node:fs';
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

/** One read(2) of up to `buffer.length` bytes from `fd` into `buffer`; resolves to the count. */
function readInto(fd: number, buffer: Buffer): Promise<number> {
  return new Promise((resolve, reject) => read(fd, buffer, 0, buffer.length, null, (err, count) => (err ? reject(err) : resolve(count))));
}

/**
 * Feeds every byte of standard input into `hash`: read(2) on fd 0 into one buffer of ours
 * (wiped at the end; a directory or a bad descriptor fails as it does for the reference);
 * a non-blocking stdin (EAGAIN) goes on through process.stdin, each chunk wiped once hashed.
 */
async function hashStdin(hash: Hash): Promise<void> {
  const chunk = Buffer.alloc(KEY_CHUNK);
  try {
    for (;;) {
      let count: number;
      try {
        count = await readInto(0, chunk);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
        for await (const part of process.stdin) {
          hash.update(part as Buffer);
          (part as Buffer).fill(0);
        }
        return;
      }
      if (count === 0) return;
      hash.update(chunk.subarray(0, count));
    }
  } finally {
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
