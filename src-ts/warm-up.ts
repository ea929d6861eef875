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
// a loopback echo target. Each connection handshakes (fast mode: the data path is
// the same for both kinds, and the DH pool is left to real clients) under a
// throw-away key, moves some bulk both ways, makes one-byte round trips, and
// ends with the user's EOF carried through and the target's back, as a real one
// does. The first connections are short, so that every field a connection's end
// changes has changed before TurboFan compiles code that would assume it never
// does (that code would be thrown away at the first close and compiled again
// while serving); the last one is long enough for the compilations.
//
// Its three listeners are on 127.0.0.1, where any local user can reach them while
// they exist (normally a fifth of a second, longer on a loaded machine; no round
// starts after 30 s). What a stranger gets there is nothing: the decrypting end
// wants the throw-away key, the echo target echoes only after the warm-up's own
// random token (and copies what it echoes: a read is a view of the buffer every
// channel of the process reads into), and a listener already holding eight
// connections closes any more at once (a flood of strangers can make the warm-up
// fail, and the daemon stay cold, but not make it hold more than a few dozen
// descriptors). Everything is torn down whatever strangers do: the listeners
// close first, then every channel is destroyed with an error (which takes each
// pipe's other side with it), and the throw-away key is wiped.

import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:net';
import type { Endpoint } from './address.js';
import { acceptChannels, dialChannel, type Channel, type DialAttempt } from './channel.js';
import { runConnection, type ConnectionOptions } from './connection.js';
import { KeyRing } from './key-ring.js';

/** One warm-up connection: bytes sent in bulk (64 KiB writes, echoed back), then that many one-byte round trips. */
export interface WarmUpRound {
  bulkBytes: number;
  roundTrips: number;
}

/** The connections run: short ones for the life cycle and the bulk paths, then one long enough for the compilations (about 0.2 s here). */
export const WARM_UP_ROUNDS: readonly WarmUpRound[] = [
  { bulkBytes: 256 * 1024, roundTrips: 4 },
  { bulkBytes: 256 * 1024, roundTrips: 4 },
  { bulkBytes: 64 * 1024, roundTrips: 3000 },
];

/** What a warm-up did: the connections whose every byte came back as sent, the round trips made in all, and the connections its listeners closed at once for being full (strangers'). */
export interface WarmUpOutcome {
  connections: number;
  roundTrips: number;
  refused: number;
}

/** The warm-up's listening ports (for tests that play the stranger). */
export interface WarmUpPorts {
  encrypting: number;
  decrypting: number;
  target: number;
}

/** Whether the CLI daemons warm up once listening: yes unless SPIPED_NATIVE_WARM_UP=0. */
export function warmUpWanted(): boolean {
  return process.env['SPIPED_NATIVE_WARM_UP'] !== '0';
}

let processWarmUp: Promise<WarmUpOutcome> | null = null;

/** Runs the warm-up with the default rounds once per process (V8's compiled code serves every tunnel in it): the first call starts it, every call returns its promise. */
export function warmUpOnce(): Promise<WarmUpOutcome> {
  processWarmUp ??= warmUpConnections();
  return processWarmUp;
}

/** A round not finished by then is given up; connecting and handshakes have this long; no round starts after the whole warm-up's limit. */
const ROUND_LIMIT_MS = 20_000;
const STEP_LIMIT_MS = 10_000;
const WARM_UP_LIMIT_MS = 30_000;
/** The warm-up's own connections need one at a time per listener (two while one closes); beyond this many, a connection is a stranger's and closed at once. */
const MAX_OPEN_PER_LISTENER = 8;

/** Runs the warm-up (see the module comment), one connection per round; `onListening` gets its ports; resolves to what it did once it has torn everything down; never rejects (a warm-up that cannot run leaves the daemon as it was: cold). */
export async function warmUpConnections(rounds: readonly WarmUpRound[] = WARM_UP_ROUNDS, onListening: (ports: WarmUpPorts) => void = () => {}): Promise<WarmUpOutcome> {
  const outcome: WarmUpOutcome = { connections: 0, roundTrips: 0, refused: 0 };
  const keys = new KeyRing([randomBytes(32)]);
  const token = randomBytes(TOKEN_LEN);
  const servers: Server[] = [];
  const opened = new Set<Channel>();
  const connections: Promise<void>[] = [];
  const track = (channel: Channel): Channel => {
    opened.add(channel);
    channel.onClose = () => opened.delete(channel); // until its owner sets its own (which is left to clean up)
    return channel;
  };
  try {
    const listen = async (onChannel: (channel: Channel) => void): Promise<Endpoint & { kind: 'inet' }> => {
      const server = createServer({ allowHalfOpen: true, pauseOnConnect: true });
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', resolve);
      });
      let live: Channel[] = [];
      acceptChannels(
        server,
        (channel) => {
          live = live.filter((open) => !open.closed);
          if (live.length >= MAX_OPEN_PER_LISTENER) {
            outcome.refused += 1;
            return channel.destroy(new Error('warm-up listener full'));
          }
          live.push(channel);
          onChannel(track(channel));
        },
        () => {},
      );
      const address = server.address();
      if (address === null || typeof address === 'string') throw new Error('no loopback port');
      return { kind: 'inet', address: '127.0.0.1', family: 4, port: address.port };
    };
    const serve = (mode: ConnectionOptions['mode'], target: Endpoint) => (channel: Channel) => {
      const settings: ConnectionOptions = { mode, keys, fast: true, requirePfs: false, timeoutMs: STEP_LIMIT_MS, keepAlive: true, bind: null, targets: () => [target], proxyProtocol: null };
      connections.push(runConnection(channel, settings).catch(() => {}));
    };
    const target = await listen((channel) => echoAfterToken(channel, token));
    const decrypting = await listen(serve('decrypt', target));
    const encrypting = await listen(serve('encrypt', decrypting));
    onListening({ encrypting: encrypting.port, decrypting: decrypting.port, target: target.port });
    const bulk = randomBytes(BULK_WRITE_LEN);
    const deadline = Date.now() + WARM_UP_LIMIT_MS;
    for (const round of rounds) {
      if (Date.now() > deadline) break;
      const user = track(await dialWithin(encrypting, STEP_LIMIT_MS));
      const made = await oneConnection(user, token, bulk, round);
      if (made < 0) break; // something came back wrong: stop here, and say so in the outcome
      outcome.roundTrips += made;
      if (made === round.roundTrips) outcome.connections += 1;
    }
  } catch {
    // no loopback, a port refused, a handshake failed: the daemon stays cold
  } finally {
    // Listeners first (no stranger gets in from now on), then every channel, with an error so that each pipe closes its other side too.
    // (A net.Server serving net.Socket channels calls back from close() only once its connections are gone: not awaited before.)
    const listenersClosed = Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
    const over = new Error('warm-up over');
    for (const channel of opened) channel.destroy(over);
    await settledWithin(Promise.all([...connections, listenersClosed]), STEP_LIMIT_MS);
    keys.close();
    token.fill(0);
  }
  return outcome;
}

/** Connects to `endpoint` within `limitMs` (else rejects, the attempt closed). */
async function dialWithin(endpoint: Endpoint, limitMs: number): Promise<Channel> {
  let attempt: DialAttempt | null = null;
  const timer = setTimeout(() => attempt?.destroy(new Error('warm-up connect timed out')), limitMs);
  try {
    return await dialChannel(endpoint, null, (started) => (attempt = started));
  } finally {
    clearTimeout(timer);
  }
}

/** The target: once the first TOKEN_LEN bytes have come and are `token` (compared whole, in constant time: no byte-by-byte oracle), echoes what follows (copied, with backpressure) and ends once its peer has; anything else is dropped. */
function echoAfterToken(channel: Channel, token: Buffer): void {
  const presented = Buffer.alloc(TOKEN_LEN);
  let have = 0; // token bytes received so far
  channel.onData = (chunk) => {
    let rest = chunk;
    if (have < TOKEN_LEN) {
      const take = Math.min(TOKEN_LEN - have, chunk.length);
      chunk.copy(presented, have, 0, take);
      have += take;
      rest = chunk.subarray(take);
      if (have < TOKEN_LEN) return;
      if (!timingSafeEqual(presented, token)) return channel.destroy(new Error('not the warm-up'));
    }
    if (rest.length > 0 && !channel.write(Buffer.from(rest), null)) channel.pause();
  };
  channel.onDrain = () => channel.resume();
  channel.onEnd = () => channel.end();
  channel.resume();
}

/** The user's side of one connection: the token, the round's bulk bytes (`bulk` repeated) and round trips, each checked as it comes back, then its EOF; resolves to the round trips made (-1 if anything came back wrong) once the connection has closed or the round gave up. */
async function oneConnection(user: Channel, token: Buffer, bulk: Buffer, { bulkBytes, roundTrips }: WarmUpRound): Promise<number> {
  let made = -1; // the first call after the bulk sends the first byte
  let intact = true;
  let timer: NodeJS.Timeout | undefined;
  const giveUp = new Promise<void>((resolve) => (timer = setTimeout(resolve, ROUND_LIMIT_MS)));
  let finished: () => void = () => {};
  const closed = new Promise<void>((resolve) => (user.onClose = () => (finished(), resolve())));
  try {
    await Promise.race([
      giveUp,
      new Promise<void>((resolve) => {
        finished = resolve;
        let echoed = 0;
        user.onData = (chunk) => {
          let rest = chunk;
          if (echoed < bulkBytes) {
            const take = Math.min(bulkBytes - echoed, chunk.length);
            for (let i = 0; i < take; i++) if (chunk[i] !== bulk[(echoed + i) % bulk.length]) intact = false;
            echoed += take;
            rest = chunk.subarray(take);
            if (echoed < bulkBytes) return;
          }
          if (made >= 0 && (rest.length !== 1 || rest[0] !== roundTripByte(made))) intact = false;
          if (!intact) return resolve();
          made += 1;
          if (made === roundTrips) return resolve();
          user.write(Buffer.from([roundTripByte(made)]), null);
        };
        user.onEnd = resolve;
        user.resume();
        user.write(Buffer.from(token), null);
        for (let sent = 0; sent < bulkBytes; sent += bulk.length) user.write(bulk.subarray(0, Math.min(bulk.length, bulkBytes - sent)), null);
        if (bulkBytes === 0) user.onData(EMPTY); // no bulk to wait for: the first round trip starts now
      }),
    ]);
    user.end();
    await Promise.race([closed, giveUp]);
  } finally {
    clearTimeout(timer);
  }
  return intact ? Math.max(made, 0) : -1;
}

/** The byte of round trip `n` (they differ from one to the next, so a stale or repeated echo shows). */
const roundTripByte = (n: number): number => n & 0xff;

/** Resolves once `promise` has settled or `limitMs` has passed, whichever is first (leaving no timer behind). */
async function settledWithin(promise: Promise<unknown>, limitMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([promise.then(noop, noop), new Promise<void>((resolve) => (timer = setTimeout(resolve, limitMs)))]);
  } finally {
    clearTimeout(timer);
  }
}

const noop = (): void => {};

const TOKEN_LEN = 32;
const BULK_WRITE_LEN = 64 * 1024;
const EMPTY = Buffer.alloc(0);
