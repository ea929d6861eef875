// Owns the start-up warm-up of a daemon: once it listens, it runs its own data
// path in-process over loopback sockets with a throwaway key (a -f handshake in
// both roles, then a pipe pair carrying small round trips and a bulk chunk each
// way), so that V8 has compiled the hot functions (handshake, socket reads,
// packet pipe, slab pool, the crypto calls) before real connections need them,
// instead of during a fresh daemon's first thousand round trips. It touches
// nothing a real connection uses (no key, no dispatcher state) and gives up
// quietly on any failure. SPIPED_NATIVE_WARMUP=0 turns it off.

import { randomBytes } from 'node:crypto';
import { connect, createServer, type Socket } from 'node:net';
import { handshake, type Session } from './handshake.js';
import { pipePackets } from './pipe.js';
import { readChunks } from './socket-reads.js';

/** Round trips of one byte, then of a packet and a bit, through the warm-up pipes. */
export const WARMUP_ROUND_TRIPS = 400;
/** Bytes sent through in one piece at the end (a bulk read's path). */
const WARMUP_BULK = 256 * 1024;
/** The warm-up gives up after this long. */
const WARMUP_LIMIT_MS = 5000;

/** Two connected loopback TCP sockets, both paused as a daemon's accepted ones are. */
async function socketPair(): Promise<[Socket, Socket]> {
  const server = createServer({ allowHalfOpen: true, pauseOnConnect: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  try {
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('no loopback address');
    const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
    const outgoing = connect({ host: '127.0.0.1', port: address.port, allowHalfOpen: true });
    await new Promise<void>((resolve, reject) => {
      outgoing.once('connect', resolve);
      outgoing.once('error', reject);
    });
    return [outgoing, await accepted];
  } finally {
    server.close();
  }
}

/** Sends `data` from `from` and resolves once `to` has received as many bytes. */
function roundTrip(from: Socket, received: { count: number; waiter: (() => void) | null }, data: Buffer): Promise<void> {
  return new Promise((resolve) => {
    received.count = -data.length;
    received.waiter = resolve;
    from.write(data);
  });
}

/** Runs the warm-up (see the file comment); resolves when it is over, whatever happened. */
export async function warmUp(): Promise<void> {
  if (process.env['SPIPED_NATIVE_WARMUP'] === '0') return;
  const sockets: Socket[] = [];
  const sessions: Session[] = [];
  const limit = setTimeout(() => {
    for (const socket of sockets) socket.destroy();
  }, WARMUP_LIMIT_MS);
  limit.unref();
  try {
    // user <-> E (plain), E <-> D (encrypted), D <-> echo (plain).
    const [user, plainE] = await socketPair();
    const [encryptedE, encryptedD] = await socketPair();
    const [plainD, echo] = await socketPair();
    sockets.push(user, plainE, encryptedE, encryptedD, plainD, echo);
    for (const socket of sockets) socket.on('error', () => {});
    const key = randomBytes(32);
    const options = { key, fast: true, requirePfs: false, timeoutMs: WARMUP_LIMIT_MS };
    const [client, server] = await Promise.all([
      handshake(encryptedE, { ...options, role: 'client' }),
      handshake(encryptedD, { ...options, role: 'server' }),
    ]);
    key.fill(0);
    sessions.push(client, server);
    const piped = Promise.all([pipePackets(plainE, encryptedE, client), pipePackets(plainD, encryptedD, server)]);
    piped.catch(() => {});
    readChunks(echo, (chunk) => void echo.write(Buffer.from(chunk)));
    echo.resume();
    echo.on('end', () => echo.end());
    const received = { count: 0, waiter: null as (() => void) | null };
    user.on('data', (chunk: Buffer) => {
      received.count += chunk.length;
      if (received.count >= 0) received.waiter?.();
    });
    const small = Buffer.alloc(1);
    const packetAndABit = Buffer.alloc(1100);
    for (let i = 0; i < WARMUP_ROUND_TRIPS; i++) await roundTrip(user, received, i % 4 === 3 ? packetAndABit : small);
    await roundTrip(user, received, Buffer.alloc(WARMUP_BULK));
    user.end();
    await piped;
  } catch {
    // a failed warm-up only means a colder start
  } finally {
    clearTimeout(limit);
    for (const socket of sockets) socket.destroy();
  }
}
