// Owns the daemon's warm-up of its connection and data path. V8 runs new code
// in its interpreter and compiles the hot functions (the channels' reads and
// writes, the packet pipe, the sealer and opener calls) with TurboFan only after
// thousands of calls. In a daemon that started cold, each of those compilations
// landed inside its first 1500 interactive round trips, on a background thread
// taking a core from the processes waiting on that round trip: those were the
// slow round trips of a fresh pair (README, Performance).
//
// The warm-up runs whole connections in-process through the daemon's own
// connection code (runConnection, both modes): a user connects to a loopback
// encrypting end, which connects to a loopback decrypting end, which connects to
// a loopback echo target. Each connection handshakes under a throw-away key,
// moves some bulk both ways, makes one-byte round trips, and ends with the
// user's EOF carried through and the target's back, as a real one does. The
// first connections are short, so that every field a connection's end changes
// has changed before TurboFan compiles code that would assume it never does
// (that code would be thrown away at the first close, and compiled again while
// serving); the last one is long enough for the compilations. Nothing leaves the
// machine, no key of the daemon's is used, and everything it opened is closed
// and its keys wiped before it resolves.

import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:net';
import type { Endpoint } from './address.js';
import { acceptChannels, dialChannel, type Channel } from './channel.js';
import { runConnection, type ConnectionOptions } from './connection.js';
import { KeyRing } from './key-ring.js';

/** One warm-up connection: bytes sent in bulk (64 KiB writes, echoed back), then that many one-byte round trips. */
export interface WarmUpRound {
  bulkBytes: number;
  roundTrips: number;
}

/** The connections run: short ones for the life cycle and the bulk paths, then one long enough for the compilations (about 0.1 s here). */
export const WARM_UP_ROUNDS: readonly WarmUpRound[] = [
  { bulkBytes: 256 * 1024, roundTrips: 4 },
  { bulkBytes: 256 * 1024, roundTrips: 4 },
  { bulkBytes: 64 * 1024, roundTrips: 1500 },
];

/** How the warm-up's connections are run: the daemon's handshake kind and socket options. */
export interface WarmUpOptions {
  fast: boolean;
  keepAlive: boolean;
}

/** Whether the CLI daemons warm up once listening: yes unless SPIPED_NATIVE_WARM_UP=0. */
export function warmUpWanted(): boolean {
  return process.env['SPIPED_NATIVE_WARM_UP'] !== '0';
}

/** What a warm-up did: the connections that carried all their bytes and round trips, and the round trips made in all. */
export interface WarmUpOutcome {
  connections: number;
  roundTrips: number;
}

let processWarmUp: Promise<WarmUpOutcome> | null = null;

/** Runs the warm-up with the default rounds once per process (V8's compiled code serves every tunnel in it): the first call starts it, every call returns its promise. */
export function warmUpOnce(options: WarmUpOptions): Promise<WarmUpOutcome> {
  processWarmUp ??= warmUpConnections(options);
  return processWarmUp;
}

/** Runs the warm-up (see the module comment), one connection per round; resolves to what it did once everything it opened is closed; never rejects (a warm-up that cannot run leaves the daemon as it was: cold). */
export async function warmUpConnections(options: WarmUpOptions, rounds: readonly WarmUpRound[] = WARM_UP_ROUNDS): Promise<WarmUpOutcome> {
  const outcome: WarmUpOutcome = { connections: 0, roundTrips: 0 };
  const keys = new KeyRing([randomBytes(32)]);
  const servers: Server[] = [];
  const opened = new Set<Channel>();
  const track = (channel: Channel): Channel => {
    opened.add(channel);
    return channel;
  };
  try {
    const listen = async (onChannel: (channel: Channel) => void): Promise<Endpoint> => {
      const server = createServer({ allowHalfOpen: true, pauseOnConnect: true });
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', resolve);
      });
      acceptChannels(server, (channel) => onChannel(track(channel)), () => {});
      const address = server.address();
      if (address === null || typeof address === 'string') throw new Error('no loopback port');
      return { kind: 'inet', address: '127.0.0.1', family: 4, port: address.port };
    };
    const connections: Promise<void>[] = [];
    const serve = (mode: ConnectionOptions['mode'], target: Endpoint) => (channel: Channel) => {
      const settings: ConnectionOptions = { mode, keys, fast: options.fast, requirePfs: false, timeoutMs: 5000, keepAlive: options.keepAlive, bind: null, targets: () => [target], proxyProtocol: null };
      connections.push(runConnection(channel, settings).catch(() => {}));
    };
    const target = await listen(echo);
    const decrypting = await listen(serve('decrypt', target));
    const encrypting = await listen(serve('encrypt', decrypting));
    for (const round of rounds) {
      const made = await oneConnection(track(await dialChannel(encrypting, null, () => {})), round);
      outcome.roundTrips += made;
      if (made === round.roundTrips) outcome.connections += 1;
    }
    for (const channel of opened) channel.destroy(); // a connection still open after its round (1 s) is ended here
    await Promise.all(connections);
  } catch {
    // no loopback, a port refused, a handshake failed: the daemon stays cold
  } finally {
    for (const channel of opened) channel.destroy();
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
    keys.close();
  }
  return outcome;
}

/** The target: echoes what it reads, and ends once its peer has. */
function echo(channel: Channel): void {
  channel.onData = (chunk) => channel.write(chunk, null);
  channel.onEnd = () => channel.end();
  channel.resume();
}

/** The user's side of one connection: the round's bulk bytes and round trips, then its EOF; resolves to the round trips made once the connection has closed, or the round gave up (the connection closed early, or 5 s passed). */
async function oneConnection(user: Channel, { bulkBytes, roundTrips }: WarmUpRound): Promise<number> {
  let made = -1; // the first call after the bulk sends the first byte
  let finished: () => void = () => {};
  const closed = new Promise<void>((resolve) => (user.onClose = () => (finished(), resolve())));
  const giveUp = new Promise<void>((resolve) => setTimeout(resolve, ROUND_LIMIT_MS).unref());
  await Promise.race([
    giveUp,
    new Promise<void>((resolve) => {
      finished = resolve;
      let echoed = 0;
      user.onData = (chunk) => {
        if (echoed < bulkBytes) {
          echoed += chunk.length;
          if (echoed < bulkBytes) return;
        }
        made += 1;
        if (made === roundTrips) return resolve();
        user.write(BYTE, null);
      };
      user.onEnd = resolve;
      user.resume();
      for (let sent = 0; sent < bulkBytes; sent += BULK_WRITE.length) {
        user.write(BULK_WRITE.subarray(0, Math.min(BULK_WRITE.length, bulkBytes - sent)), null);
      }
      if (bulkBytes === 0) user.onData(EMPTY); // no bulk to wait for: the first round trip starts now
    }),
  ]);
  user.end();
  await Promise.race([closed, giveUp]);
  return Math.max(made, 0);
}

/** A round that has not finished by then is given up (its channels are closed by the caller). */
const ROUND_LIMIT_MS = 5000;
const BYTE = Buffer.from([0x78]);
const EMPTY = Buffer.alloc(0);
const BULK_WRITE = Buffer.alloc(64 * 1024, 0x78);
