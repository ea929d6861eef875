// Owns the worker thread of the DH pool (dh-pool.ts): it computes one-time
// group-14 key pairs, x = 2^258 + 256 random bits and y = 2^x mod p, off the
// event loop, and hands each to the pool by transferring its buffers (so no copy
// of an exponent is left here). It never sees a peer's value or a session key.
// On Linux the thread runs at the lowest CPU priority (nice 19): it fills the
// pool only with CPU time the event loops leave idle, and never competes with a
// handshake under way (whose own modexp would otherwise wait for the refill's).

import { createDiffieHellman, randomFillSync } from 'node:crypto';
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';

/** Lowers this thread (not the process) to nice 19 where the system allows it: on Linux a thread id is a PRIO_PROCESS id of its own. */
function lowerThreadPriority(): void {
  if (process.platform !== 'linux') return;
  try {
    const threadId = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (Number.isInteger(threadId) && threadId !== process.pid) setPriority(threadId, 19);
  } catch {
    // no /proc, or not allowed: the pool still works, at normal priority
  }
}

/** What the pool sends: how many pairs to make. */
export interface PairRequest {
  count: number;
}

/** What this worker sends back, one message per pair: the exponent and y (256 bytes), both transferred. */
export interface PairMessage {
  exponent: ArrayBuffer;
  y: ArrayBuffer;
}

const DH_LEN = 256;
const CLEARED_EXPONENT = Buffer.from([1]);

if (parentPort !== null) {
  const port = parentPort;
  lowerThreadPriority();
  const dh = createDiffieHellman(Buffer.from(workerData as Uint8Array), 2); // validates the prime once, here and not on the event loop
  port.on('message', ({ count }: PairRequest) => {
    for (let i = 0; i < count; i++) {
      const exponent = new Uint8Array(new ArrayBuffer(33));
      exponent[0] = 0x04; // 2^258
      randomFillSync(exponent, 1);
      dh.setPrivateKey(exponent);
      const value = dh.generateKeys();
      dh.setPrivateKey(CLEARED_EXPONENT); // OpenSSL frees the exponent with BN_clear_free
      const y = new Uint8Array(new ArrayBuffer(DH_LEN));
      y.set(value, DH_LEN - value.length);
      const message: PairMessage = { exponent: exponent.buffer, y: y.buffer };
      port.postMessage(message, [exponent.buffer, y.buffer]);
    }
  });
}
