// Owns the pool of one-time Diffie-Hellman key pairs that PFS daemons and
// servers draw their own DH value from: a worker thread (dh-worker.ts) keeps up
// to POOL_SIZE pairs computed ahead, so the 2048-bit modexp for y runs on the
// other core instead of inside a handshake. Each pair is taken once (and wiped by
// the handshake that took it); what is left is wiped at exit. An empty pool, or
// none (spipe, connect()), means the handshake computes its value itself.

import { Worker } from 'node:worker_threads';
import type { DhContribution } from './handshake.js';
import type { PairMessage, PairRequest } from './dh-worker.js';

/** Pairs kept computed ahead. */
export const POOL_SIZE = 16;

let worker: Worker | null = null;
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

/** Wipes every pair still in the pool. */
function wipePool(): void {
  for (const pair of ready.splice(0)) pair.exponent?.fill(0);
}

/** Starts the pool's worker (idempotent); `prime` is the group's 256-byte prime. Never throws: without a worker, handshakes compute their own values. */
export function startDhPool(prime: Buffer): void {
  if (worker !== null) return;
  try {
    worker = new Worker(new URL('./dh-worker.js', import.meta.url), { workerData: new Uint8Array(prime) });
  } catch {
    return;
  }
  worker.unref(); // an idle pool never keeps the process alive
  worker.on('message', ({ exponent, y }: PairMessage) => {
    pending -= 1;
    ready.push({ y: Buffer.from(y), exponent: Buffer.from(exponent) });
  });
  worker.on('error', () => {
    // The worker died: stop using it; handshakes compute their own values from now on.
    worker = null;
    pending = 0;
  });
  process.once('exit', wipePool);
  refill();
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
