// Owns `spiped-native keygen [file]`: 32 bytes from crypto.randomBytes, written
// to a new file with mode 0600 (never overwriting one), or raw to stdout when
// stdout is not a terminal.

import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { strerror } from './messages.js';

/** Bytes in a generated key file (256 bits, as spiped's documentation asks). */
export const KEY_FILE_BYTES = 32;

/** Writes a fresh key to `file` (or stdout when undefined); returns the exit code. */
export function runKeygen(program: string, file: string | undefined): number {
  const key = randomBytes(KEY_FILE_BYTES);
  try {
    if (file === undefined) {
      if (process.stdout.isTTY === true) {
        process.stderr.write(`${program}: refusing to write a binary key to a terminal; give a file name or redirect stdout\n`);
        return 1;
      }
      process.stdout.write(key);
      return 0;
    }
    try {
      writeFileSync(file, key, { mode: 0o600, flag: 'wx' });
    } catch (err) {
      const why = (err as { code?: unknown }).code === 'EEXIST' ? 'file exists; refusing to overwrite it' : strerror(err);
      process.stderr.write(`${program}: Cannot create key file ${file}: ${why}\n`);
      return 1;
    }
    process.stderr.write(`${program}: wrote a new ${KEY_FILE_BYTES * 8}-bit key to ${file} (mode 0600)\n`);
    return 0;
  } finally {
    key.fill(0);
  }
}
