// Owns `spiped-native doctor [--key file]`: reports the live crypto backend
// and why it was chosen, the CPU features that matter, the Node / N-API /
// package versions and the platform; with --key, checks the key file's size.

import { readFileSync } from 'node:fs';
import { cryptoBackend } from '../crypto/index.js';
import { packageVersion, platformName } from '../crypto/native.js';
import { errorText } from './messages.js';
import { REFERENCE_VERSION } from './usage.js';
import { KEY_FILE_BYTES } from './keygen.js';

/** This package's version, from its package.json (re-exported for the CLI). */
export { packageVersion };

/** The CPU flags /proc/cpuinfo lists (Linux only; empty elsewhere). */
function cpuinfoFlags(): Set<string> {
  try {
    const flagsLine = /^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    return new Set((flagsLine?.[1] ?? '').trim().split(/\s+/));
  } catch {
    return new Set();
  }
}

const yesNo = (value: boolean): string => (value ? 'yes' : 'no');

/** Prints the report on stdout (warnings on stderr); returns 0, or 1 when something is wrong. */
export function runDoctor(program: string, keyFile: string | undefined): number {
  let status = 0;
  const out = (line: string): void => void process.stdout.write(`${line}\n`);
  out(`spiped-native ${packageVersion()} (spiped ${REFERENCE_VERSION} compatible)`);
  try {
    const backend = cryptoBackend();
    out(`crypto backend: ${backend.name}${backend.reason === undefined ? '' : ` (${backend.reason})`}`);
    out(`backend CPU features: aesni=${yesNo(backend.aesni)} shani=${yesNo(backend.shani)} vaes=${yesNo(backend.vaes)}`);
    if (backend.kernels !== null) out(`native kernels: ${backend.kernels}`);
  } catch (err) {
    out(`crypto backend: unavailable (${errorText(err)})`);
    status = 1;
  }
  const flags = cpuinfoFlags();
  if (flags.size > 0) {
    const has = (flag: string): string => yesNo(flags.has(flag));
    out(`/proc/cpuinfo: aes=${has('aes')} sha_ni=${has('sha_ni')} vaes=${has('vaes')} avx2=${has('avx2')}`);
  }
  out(`node: ${process.version}  napi: ${process.versions.napi ?? 'none'}  openssl: ${process.versions.openssl ?? 'none'}`);
  out(`platform: ${process.platform} ${process.arch} (addon target ${platformName()})`);
  if (keyFile !== undefined) {
    try {
      const size = readFileSync(keyFile).length;
      out(`key file: ${keyFile}: ${size} bytes`);
      if (size < KEY_FILE_BYTES) {
        process.stderr.write(
          `${program}: warning: key file ${keyFile} is only ${size} bytes; use at least ${KEY_FILE_BYTES} random bytes (spiped-native keygen)\n`,
        );
        status = 1;
      }
    } catch (err) {
      process.stderr.write(`${program}: cannot read key file ${keyFile}: ${errorText(err)}\n`);
      status = 1;
    }
  }
  return status;
}
