// Test helpers for Diffie-Hellman checks: a BigInt reference modexp, and a
// counter of the modexps this process computes for its own DH values.

import type { ExecutionContext } from 'ava';
import { prepareDiffieHellman } from 'spiped-native/handshake';

/** A big-endian byte string as a BigInt. */
export const toBigInt = (bytes: Uint8Array): bigint => BigInt(`0x${Buffer.from(bytes).toString('hex') || '0'}`);

/** base^exponent mod modulus, by square-and-multiply (test reference only: not constant time). */
export function modPow(base: bigint, exponent: bigint, modulus: bigint): bigint {
  let result = 1n;
  let square = base % modulus;
  for (let e = exponent; e > 0n; e >>= 1n) {
    if (e & 1n) result = (result * square) % modulus;
    square = (square * square) % modulus;
  }
  return result;
}

/** Counts, until the test ends, every y = 2^x mod p this process computes on its group-14 object (all of them go through it); returns the count so far. */
export function countModexps(t: ExecutionContext): () => number {
  const dh = prepareDiffieHellman();
  const generateKeys = dh.generateKeys.bind(dh);
  let modexps = 0;
  dh.generateKeys = ((...args: Parameters<typeof dh.generateKeys>) => {
    modexps += 1;
    return generateKeys(...args);
  }) as typeof dh.generateKeys;
  t.teardown(() => void delete (dh as { generateKeys?: unknown }).generateKeys); // back to the prototype's
  return () => modexps;
}
