// Faults on the wire and in the peer, as real processes on loopback (the issue
// "Resist abuse at least as well as the C spiped"): churn of 10,000 connections
// with a quarter reset mid-stream, kill -9 of the peer daemon mid-transfer (ours
// and C peers), a reset in the middle of a packet between the daemons, and a
// reset from one end racing a FIN from the other. Each checks that our surviving
// daemons close what they must, do not hang, keep serving, and go back to the
// file descriptors they held before.

import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import {
  exchange,
  freePort,
  referenceAvailable,
  startDaemon,
  startEchoServer,
  tempDir,
  writeKey,
  type Daemon,
  type Impl,
} from './helpers/processes.js';
import { closeServer, fdCount, fdsSettle, isAlive, mapLimit, rssMiB, waitUntil } from './helpers/cli-run.js';
import { openRaw, startCuttingRelay, type Cut, type RawClient } from './helpers/raw-clients.js';

const IMPLS: Impl[] = referenceAvailable() ? ['ours', 'c'] : ['ours'];
const loopback = (port: number): string => `[127.0.0.1]:${port}`;
/** How long a close may take to travel through both daemons on a loaded 2-core machine. */
const SETTLE_MS = 5000;

/** Resolves after `ms` milliseconds. */
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A running encrypting/decrypting pair in front of a target, with what restarting either needs. */
interface Tunnel {
  e: Daemon;
  d: Daemon;
  ePort: number;
  dPort: number;
  restart: (which: 'e' | 'd') => Promise<Daemon>;
}

/** Options of startTunnel(). */
interface TunnelOptions {
  eImpl?: Impl;
  dImpl?: Impl;
  flags?: readonly string[]; // added to both daemons
  eTarget?: number; // where -e connects instead of -d's port (a relay in between)
  env?: NodeJS.ProcessEnv; // added to our daemons' environment
}

/** Starts -d in front of `targetPort` and -e in front of it (or of `eTarget`), both stopped after the test. */
async function startTunnel(t: ExecutionContext, targetPort: number, options: TunnelOptions = {}): Promise<Tunnel> {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const key = writeKey(dir);
  const [dPort, ePort] = [await freePort(), await freePort()];
  const flags = options.flags ?? [];
  const daemons: Daemon[] = [];
  t.teardown(() => Promise.all(daemons.map((daemon) => daemon.stop())));
  const start = async (which: 'e' | 'd'): Promise<Daemon> => {
    const daemon =
      which === 'd'
        ? await startDaemon(options.dImpl ?? 'ours', ['-d', '-s', loopback(dPort), '-t', loopback(targetPort), '-k', key, ...flags], { port: dPort }, options.env)
        : await startDaemon(options.eImpl ?? 'ours', ['-e', '-s', loopback(ePort), '-t', loopback(options.eTarget ?? dPort), '-k', key, ...flags], { port: ePort }, options.env);
    daemons.push(daemon);
    return daemon;
  };
  const d = await start('d');
  const e = await start('e');
  return { e, d, ePort, dPort, restart: start };
}

/** Sends `size` random bytes through the tunnel's entry and checks they come back, with EOF. */
async function echoWorks(t: ExecutionContext, port: number, what: string, size = 16 * 1024): Promise<void> {
  const data = randomBytes(size);
  const result = await exchange({ port }, data, SETTLE_MS);
  t.true(result.received.equals(data) && result.ended === 'eof', `${what}: a ${size}-byte echo goes through`);
}

/** Checks that every pid in `baseline` is alive and is back to (at most) its baseline descriptor count. */
async function fdsBack(t: ExecutionContext, baseline: ReadonlyMap<number, number>, what: string): Promise<void> {
  for (const [pid, before] of baseline) {
    t.true(isAlive(pid), `${what}: daemon ${pid} is alive`);
    const after = await fdsSettle(pid, before, SETTLE_MS);
    t.true(after <= before, `${what}: daemon ${pid} holds ${after} descriptors, ${before} before`);
  }
}

/** Each pid's descriptor count now. */
const fdBaseline = (pids: readonly number[]): Map<number, number> => new Map(pids.map((pid) => [pid, fdCount(pid)]));

const CHURN = 10_000;
/** Connections run before the baseline is taken (the daemons' first connections compile and allocate for good). */
const CHURN_WARM_UP = 2000;
/**
 * V8's own heap limits for the churn daemons. Left to itself, V8 grows its heap
 * with the allocation rate for tens of thousands of connections on Node 24
 * (measured: VmRSS 105 -> 213 MiB over 20,000 connections, the live heap after
 * each mark-compact about 8.5 MiB throughout, the session-start build alike),
 * which would hide a leak or mimic one. Capped, a JavaScript leak ends in an
 * out-of-memory crash (the daemon dies and the test fails), and VmRSS measures
 * what is left: memory outside V8's heap (measured capped: flat within 1 MiB over
 * 20,000 connections on Node 20 and on Node 24).
 */
const CHURN_NODE_OPTIONS = '--max-old-space-size=48 --max-semi-space-size=2';
/**
 * Each daemon's VmRSS may grow by at most this much over the second half of the
 * CHURN connections. A daemon that kept 4 KiB per connection (a socket and its
 * buffers) would grow by 20 MiB over that half alone.
 */
const CHURN_RSS_GROWTH_MIB = 6;

/** How one churn connection behaves: a clean echo, or a reset right after writing, or once the echo has started. */
type ChurnKind = 'echo' | 'reset-at-once' | 'reset-after-echo';

/** One churn connection through the tunnel at `port`; resolves true when it did what `kind` says (an echo came back whole). */
async function churnConnection(port: number, kind: ChurnKind, payload: Buffer): Promise<boolean> {
  const client = await openRaw(port);
  client.socket.write(payload);
  if (kind === 'reset-at-once') {
    client.socket.resetAndDestroy();
    return true;
  }
  if (kind === 'reset-after-echo') {
    const flowing = await client.receivedAtLeast(1, SETTLE_MS);
    client.socket.resetAndDestroy();
    return flowing;
  }
  client.socket.end();
  const closed = await Promise.race([client.closed, sleep(SETTLE_MS).then(() => null)]);
  client.socket.destroy();
  return closed !== null && client.received().equals(payload);
}

// Proves: 10,000 connections through our -e -f -> our -d -f -> echo server, a
// quarter of them reset (RST) by the client mid-stream (half right after
// writing, half once the echo is flowing), leave neither daemon with more file
// descriptors than before (counted once everything has drained), every target
// connection closed, VmRSS grown by at most CHURN_RSS_GROWTH_MIB over the second
// half of them (V8's heap capped, see CHURN_NODE_OPTIONS), and every clean
// connection echoed whole. -f (no Diffie-Hellman) keeps 10,000 handshakes
// within the time budget; the life cycle under test is the same.
test.serial(`${CHURN} connections through our pair, a quarter reset mid-stream: no descriptor or memory growth`, async (t) => {
  t.timeout(110_000);
  const echo = await startEchoServer();
  t.teardown(() => closeServer(echo.server));
  const nodeOptions = [process.env['NODE_OPTIONS'], CHURN_NODE_OPTIONS].filter(Boolean).join(' ');
  const tunnel = await startTunnel(t, echo.port, { flags: ['-f'], env: { NODE_OPTIONS: nodeOptions } });
  const pids = [tunnel.e.child.pid!, tunnel.d.child.pid!];
  const payload = randomBytes(4096);
  const kinds = (count: number): ChurnKind[] =>
    Array.from({ length: count }, (_, i): ChurnKind => (i % 4 !== 3 ? 'echo' : i % 8 === 3 ? 'reset-at-once' : 'reset-after-echo'));
  const warm = await mapLimit(kinds(CHURN_WARM_UP), 16, (kind) => churnConnection(tunnel.ePort, kind, payload));
  t.true(warm.every(Boolean), 'warm-up connections behaved');
  await waitUntil(() => echo.open() === 0, SETTLE_MS);
  const fds = fdBaseline(pids);
  const rssBefore = pids.map(rssMiB);

  const started = Date.now();
  const firstHalf = await mapLimit(kinds(CHURN / 2), 16, (kind) => churnConnection(tunnel.ePort, kind, payload));
  const rssHalfway = pids.map(rssMiB);
  const secondHalf = await mapLimit(kinds(CHURN / 2), 16, (kind) => churnConnection(tunnel.ePort, kind, payload));
  const outcomes = [...firstHalf, ...secondHalf];
  t.log(`${CHURN} connections in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  t.is(outcomes.filter((ok) => !ok).length, 0, 'every clean connection echoed whole, every reset one had data flowing');
  t.true(await waitUntil(() => echo.open() === 0, SETTLE_MS), `every target connection closed (${echo.open()} open)`);
  await fdsBack(t, fds, 'after the churn');
  const rssAfter = pids.map(rssMiB);
  pids.forEach((pid, i) => {
    const growth = rssAfter[i]! - rssHalfway[i]!;
    t.log(`pid ${pid}: VmRSS ${rssBefore[i]!.toFixed(1)} -> ${rssHalfway[i]!.toFixed(1)} -> ${rssAfter[i]!.toFixed(1)} MiB`);
    t.true(growth <= CHURN_RSS_GROWTH_MIB, `pid ${pid}: VmRSS grew by ${growth.toFixed(1)} MiB over the second ${CHURN / 2} (bound ${CHURN_RSS_GROWTH_MIB})`);
  });
  await echoWorks(t, tunnel.ePort, 'after the churn');
});

/** Writes `chunk` to the client's socket again and again, honouring backpressure, until the socket closes. */
function pumpUntilClosed(client: RawClient, chunk: Buffer): void {
  const write = (): void => {
    while (client.socket.writable && !client.isClosed() && client.socket.write(chunk));
  };
  client.socket.on('drain', write);
  write();
}

for (const survivor of ['e', 'd'] as const) {
  for (const peer of IMPLS) {
    const victim = survivor === 'e' ? 'd' : 'e';
    // Proves: when the peer daemon (ours or C) is killed with SIGKILL while bulk
    // flows both ways (client -> E -> D -> echo server and back), our surviving
    // daemon closes both of that connection's sockets: the socket on its far side
    // (the client's, for E; the echo server's, for D) sees its close within
    // SETTLE_MS, and the survivor's descriptor count returns to what it was
    // before the transfer; it stays alive and serves again once the peer is back.
    test.serial(`kill -9 of the ${peer} -${victim} mid-transfer: our -${survivor} closes both sockets, descriptors back`, async (t) => {
      t.timeout(30_000);
      const echo = await startEchoServer();
      t.teardown(() => closeServer(echo.server));
      const tunnel = await startTunnel(t, echo.port, survivor === 'e' ? { dImpl: peer } : { eImpl: peer });
      const kept = tunnel[survivor];
      await echoWorks(t, tunnel.ePort, 'before');
      await waitUntil(() => echo.open() === 0, SETTLE_MS);
      const fds = fdBaseline([kept.child.pid!]);

      const client = await openRaw(tunnel.ePort);
      pumpUntilClosed(client, randomBytes(64 * 1024));
      t.true(await client.receivedAtLeast(1024 * 1024, 10_000), 'bulk flows through the pair both ways');
      const killed = tunnel[victim].child;
      const exited = new Promise((resolve) => killed.once('exit', resolve));
      killed.kill('SIGKILL');
      await exited;
      const killedAt = Date.now();
      if (survivor === 'e') {
        const closed = await Promise.race([client.closed, sleep(SETTLE_MS).then(() => null)]);
        t.true(closed !== null && closed.how !== 'local', `our -e closed the client's socket (${closed?.how ?? 'still open'})`);
      } else {
        t.true(await waitUntil(() => echo.open() === 0, SETTLE_MS), "our -d closed the echo server's socket");
      }
      t.log(`closed ${Date.now() - killedAt} ms after the kill`);
      client.socket.destroy();
      await fdsBack(t, fds, `after kill -9 of -${victim}`);
      t.log(`descriptors back ${Date.now() - killedAt} ms after the kill`);
      await tunnel.restart(victim);
      await echoWorks(t, tunnel.ePort, `our -${survivor} with the ${peer} -${victim} restarted`);
    });
  }
}

/** Where packet 2 of either direction is half through: after the nonce, y || h and two 1060-byte packets. */
const MID_PACKET = 32 + 288 + 2 * 1060 + 530;

for (const [direction, reset] of [
  ['toServer', 'server'],
  ['toServer', 'client'],
  ['toClient', 'client'],
  ['toClient', 'server'],
] as const) {
  const partialTo = direction === 'toServer' ? '-d' : '-e';
  const resetTo = reset === 'server' ? '-d' : '-e';
  const finTo = reset === 'server' ? '-e' : '-d';
  // Proves: a relay between our -e and our -d that forwards half of packet 2
  // towards `partialTo`, then resets its connection to `resetTo` and sends a FIN
  // to `finTo` at once, makes both daemons close that connection entirely: the
  // client sees its socket closed by -e, the echo server's socket is closed by
  // -d, both within SETTLE_MS; neither daemon crashes, both return to their
  // descriptor counts, and the next connection through the same relay works.
  test.serial(`half a packet towards ${partialTo}, then RST to ${resetTo} and FIN to ${finTo}: both daemons close it, no leak`, async (t) => {
    t.timeout(30_000);
    const echo = await startEchoServer();
    t.teardown(() => closeServer(echo.server));
    const relayPort = await freePort();
    const tunnel = await startTunnel(t, echo.port, { eTarget: relayPort });
    const relay = await startCuttingRelay(relayPort, tunnel.dPort);
    t.teardown(() => closeServer(relay.server));
    await echoWorks(t, tunnel.ePort, 'before');
    await waitUntil(() => echo.open() === 0, SETTLE_MS);
    const fds = fdBaseline([tunnel.e.child.pid!, tunnel.d.child.pid!]);

    const cut: Cut = { direction, after: MID_PACKET, reset };
    const cutDone = relay.arm(cut);
    const client = await openRaw(tunnel.ePort);
    client.socket.write(randomBytes(16 * 1024)); // 16 packets each way, and no FIN: only the cut ends it
    await Promise.race([cutDone, sleep(SETTLE_MS)]);
    const closed = await Promise.race([client.closed, sleep(SETTLE_MS).then(() => null)]);
    t.true(closed !== null && closed.how !== 'local', `our -e closed the client's socket (${closed?.how ?? 'still open'})`);
    t.true(await waitUntil(() => echo.open() === 0, SETTLE_MS), "our -d closed the echo server's socket");
    client.socket.destroy();
    await fdsBack(t, fds, 'after the cut');
    await echoWorks(t, tunnel.ePort, 'the next connection through the relay');
  });
}

/** How the target behaves towards each connection: echo; echo, then RST after a delay; or echo with a FIN at once. */
type TargetMode = 'echo' | 'reset' | 'fin';

/** A target whose behaviour the test switches; `open()` counts its connections not yet closed. */
interface ScriptedTarget {
  server: Server;
  port: number;
  mode: TargetMode;
  open: () => number;
  last: Socket | null; // the connection accepted last
}

/** The delays (ms; -1 = at once in the 'data' handler, 0 = setImmediate) that the racing ends take turns with. */
const RACE_DELAYS = [-1, 0, 1, 2, 3, 5];

/** Runs `action` after RACE_DELAYS[`turn` % length]. */
function afterRaceDelay(turn: number, action: () => void): void {
  const delay = RACE_DELAYS[turn % RACE_DELAYS.length]!;
  if (delay < 0) action();
  else if (delay === 0) setImmediate(action);
  else setTimeout(action, delay);
}

/** Starts a ScriptedTarget in 'echo' mode. */
function startScriptedTarget(): Promise<ScriptedTarget> {
  let open = 0;
  let turn = 0;
  const server = createServer({ allowHalfOpen: true }, (socket: Socket) => {
    open += 1;
    target.last = socket;
    socket.once('close', () => (open -= 1));
    socket.on('error', () => {});
    const mode = target.mode;
    const myTurn = turn++;
    socket.once('data', (chunk: Buffer) => {
      socket.write(chunk);
      if (mode === 'fin') socket.end();
      if (mode === 'reset') afterRaceDelay(myTurn, () => socket.resetAndDestroy());
      if (mode === 'echo') socket.pipe(socket);
    });
  });
  const target: ScriptedTarget = { server, port: 0, mode: 'echo', open: () => open, last: null };
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      target.port = (server.address() as AddressInfo).port;
      resolve(target);
    });
  });
}

const RACES = 240;

for (const [label, targetMode] of [
  ['the target resets as the client sends its FIN', 'reset'],
  ['the client resets as the target sends its FIN', 'fin'],
] as const) {
  // Proves: with a reset from one end of our pair (-e -> -d, PFS) and a FIN
  // from the other end crossing inside the daemons (RACES connections, the
  // reset taking turns of delays from 0 to 5 ms after the data, to land on every
  // stage of the FIN's way), neither daemon crashes or hangs: every connection
  // is closed at the target within SETTLE_MS (and, where the client did not
  // reset, at the client too), both daemons return to their descriptor counts,
  // and the pair still echoes. Upstream spiped 1.6.4 fixed an abort in this
  // race; the reference 1.6.2 installed here passes this test and the stopped-
  // daemon one below as well (measured), so they guard the class of bug for
  // ours rather than reproduce that one.
  test.serial(`RST racing FIN: ${label}, ${RACES} times: no crash, no hang, no leak`, async (t) => {
    t.timeout(60_000);
    const target = await startScriptedTarget();
    t.teardown(() => closeServer(target.server));
    const tunnel = await startTunnel(t, target.port);
    await echoWorks(t, tunnel.ePort, 'before');
    await waitUntil(() => target.open() === 0, SETTLE_MS);
    const fds = fdBaseline([tunnel.e.child.pid!, tunnel.d.child.pid!]);

    target.mode = targetMode;
    const payload = randomBytes(1024);
    const turns = Array.from({ length: RACES }, (_, i) => i);
    const hung = await mapLimit(turns, 16, async (turn): Promise<number> => {
      const client = await openRaw(tunnel.ePort);
      if (targetMode === 'reset') {
        client.socket.end(payload); // the FIN right behind the data
      } else {
        client.socket.write(payload);
        afterRaceDelay(turn, () => client.socket.resetAndDestroy());
      }
      const closed = await Promise.race([client.closed, sleep(SETTLE_MS).then(() => null)]);
      client.socket.destroy();
      return closed === null ? 1 : 0;
    });
    t.is(hung.reduce((a, b) => a + b, 0), 0, 'no client connection hung');
    t.true(await waitUntil(() => target.open() === 0, SETTLE_MS), `every target connection closed (${target.open()} open)`);
    await fdsBack(t, fds, `after ${RACES} races`);
    target.mode = 'echo';
    await echoWorks(t, tunnel.ePort, 'after the races');
  });
}

const STOPPED_ROUNDS = 4;

for (const stopped of ['d', 'e'] as const) {
  const finFrom = stopped === 'd' ? 'the client' : 'the target';
  const rstFrom = stopped === 'd' ? 'the target' : 'the client';
  // Proves: the race made exact. The daemon under test is stopped (SIGSTOP)
  // while a connection is established; a FIN reaches it through the other
  // daemon and a RST reaches it directly, in both orders (at -d: FIN from the
  // client, RST from the target; at -e: FIN from the target, RST from the
  // client), so both are waiting when it resumes (SIGCONT) and are seen in the
  // same turn of its event loop. It must not crash or hang: the client's and
  // the target's sockets are closed within SETTLE_MS, both daemons return to
  // their descriptor counts and still echo.
  test.serial(`RST and FIN waiting together at a stopped -${stopped} (FIN from ${finFrom}, RST from ${rstFrom}): no crash, no hang, no leak`, async (t) => {
    t.timeout(60_000);
    const target = await startScriptedTarget();
    t.teardown(() => closeServer(target.server));
    const tunnel = await startTunnel(t, target.port);
    const victim = tunnel[stopped].child;
    t.teardown(() => void victim.kill('SIGCONT'));
    await echoWorks(t, tunnel.ePort, 'before');
    await waitUntil(() => target.open() === 0, SETTLE_MS);
    const fds = fdBaseline([tunnel.e.child.pid!, tunnel.d.child.pid!]);
    for (let round = 0; round < STOPPED_ROUNDS; round++) {
      const rstFirst = round % 2 === 1;
      const client = await openRaw(tunnel.ePort);
      client.socket.write('ping');
      t.true(await client.receivedAtLeast(4, SETTLE_MS), `round ${round}: the connection is established`);
      const targetSocket = target.last!;
      victim.kill('SIGSTOP');
      const fin = (): void => void (stopped === 'd' ? client.socket.end() : targetSocket.end());
      const rst = (): void => void (stopped === 'd' ? targetSocket.resetAndDestroy() : client.socket.resetAndDestroy());
      (rstFirst ? rst : fin)();
      await sleep(20);
      (rstFirst ? fin : rst)();
      await sleep(30); // both have arrived at the stopped daemon's sockets
      victim.kill('SIGCONT');
      const closed = await Promise.race([client.closed, sleep(SETTLE_MS).then(() => null)]);
      t.true(closed !== null, `round ${round} (${rstFirst ? 'RST' : 'FIN'} first): the client's socket closed`);
      t.true(await waitUntil(() => target.open() === 0, SETTLE_MS), `round ${round}: the target's socket closed`);
      client.socket.destroy();
      t.true(isAlive(victim.pid!), `round ${round}: our -${stopped} survived`);
    }
    await fdsBack(t, fds, `after ${STOPPED_ROUNDS} rounds`);
    await echoWorks(t, tunnel.ePort, 'afterwards');
  });
}
