// Owns the pool of one-time Diffie-Hellman key pairs that PFS daemons and
// servers draw their own DH value from (unless turned off: see dhPoolWanted): a
// low-priority worker thread (dh-worker.ts) keeps up to POOL_SIZE pairs computed
// ahead, so the 2048-bit modexp for y runs in idle CPU time instead of inside a
// handshake. Each pair is taken once (and wiped by
// the handshake that took it). Every daemon or server that uses the pool holds a
// lease; when the last lease is released, the worker stops and the pairs left are
// wiped. No pool (spipe, connect()) or an empty one means the handshake computes
// its value itself.

import { Worker } from 'node:worker_threads';
import type { DhContribution } from './handshake.js';
import type { PairMessage, PairRequest } from './dh-worker.js';

/** Pairs kept computed ahead (a burst of this many PFS handshakes finds its values ready). */
export const POOL_SIZE = 8;

/**
 * Whether PFS daemons and servers use the pool: on unless SPIPED_NATIVE_DH_POOL=0. Its
 * worker runs at the lowest CPU priority (dh-worker.ts), so even on 2 cores shared by
 * both daemons and their load (bench:tunnel here) it computes only in CPU time the
 * event loops leave idle: it takes the modexp for the daemon's own y out of the
 * handshake without competing with one (README, Performance).
 */
export function dhPoolWanted(): boolean {
  return process.env['SPIPED_NATIVE_DH_POOL'] !== '0';
}

let worker: Worker | null = null;
let leases = 0;
const ready: DhContribution[] = [];
/** Pairs asked of the worker and not yet arrived. */
let pending = 0;

/** Asks the worker for enough pairs to fill the pool again. */
function refill(): void {
  const wanted = POOL_SIZE - ready.length - pending;
  if (worker === null || wanted <= 0) return;
  pending += wanted;
  const request: PairRequest = { count: wanted };
  worker.postMessage(request);
}

/** Stops the worker (if `which` is still the live one) and wipes every pair left. */
function stop(which: Worker | null): void {
  if (which === null || which !== worker) return;
  worker = null;
  pending = 0;
  void which.terminate();
  for (const pair of ready.splice(0)) pair.exponent?.fill(0);
}

/** Takes a lease on the pool, starting its worker if none runs; `prime` is the group's 256-byte prime. Returns the release function (idempotent). Never throws: without a worker, handshakes compute their own values. */
export function leaseDhPool(prime: Buffer): () => void {
  leases += 1;
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    leases -= 1;
    if (leases === 0) stop(worker);
  };
  if (worker !== null) return release;
  let started: Worker;
  try {
    started = new Worker(new URL('./dh-worker.js', import.meta.url), { workerData: new Uint8Array(prime) });
  } catch {
    return release;
  }
  worker = started;
  started.on('message', ({ exponent, y }: PairMessage) => {
    pending -= 1;
    const pair = { y: Buffer.from(y), exponent: Buffer.from(exponent) };
    if (worker === started) ready.push(pair);
    else pair.exponent.fill(0); // arrived after the pool stopped
  });
  // The worker died: stop using it; handshakes compute their own values from now on.
  started.on('error', () => stop(started));
  started.on('exit', () => stop(started));
  started.unref(); // after the listeners, which would ref it again: an idle pool never keeps the process alive
  refill();
  return release;
}

/** A pair computed ahead, never handed out before, or null if the pool is empty or not started; asks for more in the background. */
export function takePooledPair(): DhContribution | null {
  const pair = ready.shift() ?? null;
  refill();
  return pair;
}

/** Pairs ready in the pool now (for tests and metrics). */
export function pooledPairCount(): number {
  return ready.length;
}
