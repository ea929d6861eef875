// The daemon's warm-up (warm-up.ts): it runs whole connections through the real
// connection code in both modes, every byte checked as it comes back (also while
// other channels of the process read into the shared buffer); a stranger on
// its loopback listeners gets nothing (but the nonce any spiped -d sends) and keeps nothing open; it leaves no socket
// behind; it runs once per process; and in a CLI daemon it has V8 compile the
// data path before any client connected (not with SPIPED_NATIVE_WARM_UP=0).

import test from 'ava';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { WARM_UP_ROUNDS, warmUpConnections, warmUpOnce, type WarmUpPorts } from 'spiped-native/warm-up';
import { waitUntil } from './helpers/cli-run.js';
import { OUR_SPIPED, channelPair, freePort, tempDir, waitForListener, writeKey } from './helpers/processes.js';

/** The TCP sockets and servers this process has open now (the warm-up uses no other kind). */
const openSockets = (): number => process.getActiveResourcesInfo().filter((kind) => kind.startsWith('TCP')).length;

const SHORT_ROUNDS = [
  { bulkBytes: 300_000, roundTrips: 3 },
  { bulkBytes: 1, roundTrips: 300 },
];

test.serial('every bulk byte and round trip comes back as sent through both pipes, and nothing is left open', async (t) => {
  const before = openSockets();
  t.deepEqual(await warmUpConnections(SHORT_ROUNDS), { connections: 2, roundTrips: 303, refused: 0 });
  t.true(await waitUntil(() => openSockets() <= before, 2000), `still open: ${process.getActiveResourcesInfo().join(', ')}`);
});

test.serial('while other channels of the process read into the shared buffer, the echoes still come back intact', async (t) => {
  const [a, b] = await channelPair();
  const data = randomBytes(8 * 1024 * 1024);
  let received = 0;
  let mismatch = false;
  b.onData = (chunk) => {
    if (!chunk.equals(data.subarray(received, received + chunk.length))) mismatch = true;
    received += chunk.length;
  };
  b.resume();
  const pumped = new Promise<void>((resolve) => {
    let sent = 0;
    const pump = (): void => {
      while (sent < data.length) {
        const part = data.subarray(sent, sent + 65536);
        sent += part.length;
        if (!a.write(part, null)) return;
      }
      resolve();
    };
    a.onDrain = pump;
    pump();
  });
  const outcome = await warmUpConnections([{ bulkBytes: 2 * 1024 * 1024, roundTrips: 200 }, ...SHORT_ROUNDS]);
  await pumped;
  t.true(await waitUntil(() => received === data.length, 10_000));
  a.destroy();
  b.destroy();
  t.false(mismatch);
  t.deepEqual(outcome, { connections: 3, roundTrips: 503, refused: 0 });
});

/** Opens a stranger's connection to `port`: sends `junk` (if any), and counts what comes back until it closes. */
function stranger(port: number, junk: Buffer | null): { socket: Socket; received: () => number; closed: Promise<void> } {
  const socket = connect({ port, host: '127.0.0.1' });
  let received = 0;
  socket.on('data', (chunk: Buffer) => (received += chunk.length));
  socket.on('error', () => {});
  socket.on('connect', () => junk !== null && socket.write(junk));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { socket, received: () => received, closed };
}

test.serial('strangers on its listeners (idle, junk, a would-be echo) get nothing back but a nonce, do not hold it up, and are all closed when it is over', async (t) => {
  const before = openSockets();
  const strangers: ReturnType<typeof stranger>[] = [];
  const allowed: number[] = []; // bytes each may get: the decrypting end's handshake nonce, as from any spiped -d; nothing elsewhere
  const started = Date.now();
  const outcome = await warmUpConnections(WARM_UP_ROUNDS, (ports: WarmUpPorts) => {
    for (const port of [ports.encrypting, ports.decrypting, ports.target]) {
      strangers.push(stranger(port, null)); // idle
      strangers.push(stranger(port, randomBytes(400))); // junk
      strangers.push(stranger(port, Buffer.alloc(100_000, 0x61))); // bytes an echo would send back
      allowed.push(...[0, 0, 0].map(() => (port === ports.decrypting ? 32 : 0)));
    }
  });
  const expected = WARM_UP_ROUNDS.reduce((sum, round) => sum + round.roundTrips, 0);
  t.deepEqual(outcome, { connections: WARM_UP_ROUNDS.length, roundTrips: expected, refused: 0 }, 'the warm-up itself went through');
  t.true(Date.now() - started < 15_000, `took ${Date.now() - started} ms`);
  await Promise.all(strangers.map((s) => s.closed));
  t.deepEqual(
    strangers.map((s) => s.received()),
    allowed,
    'no stranger got a byte beyond a nonce',
  );
  t.true(await waitUntil(() => openSockets() <= before, 2000), `still open: ${process.getActiveResourcesInfo().join(', ')}`);
});

test.serial('a flood of strangers: each listener keeps at most 8 connections and closes the rest at once; the warm-up still ends, and closes them all', async (t) => {
  const before = openSockets();
  const flood: ReturnType<typeof stranger>[] = [];
  const started = Date.now();
  const outcome = await warmUpConnections(WARM_UP_ROUNDS, (ports: WarmUpPorts) => {
    for (const port of [ports.encrypting, ports.decrypting, ports.target]) for (let i = 0; i < 40; i++) flood.push(stranger(port, null));
  });
  // Of each listener's 40, at most 8 were let in (fewer once the warm-up's own took their places).
  t.true(outcome.refused >= 3 * (40 - 8), `${outcome.refused} of ${flood.length} refused`);
  t.true(outcome.connections <= WARM_UP_ROUNDS.length);
  t.true(Date.now() - started < 60_000, `took ${Date.now() - started} ms`);
  await Promise.all(flood.map((s) => s.closed));
  t.true(flood.every((s) => s.received() <= 32), 'none got more than a nonce');
  t.true(await waitUntil(() => openSockets() <= before, 2000), `still open: ${process.getActiveResourcesInfo().join(', ')}`);
});

test.serial("the default rounds, once per process: a second call gets the first one's outcome", async (t) => {
  const first = warmUpOnce();
  t.is(warmUpOnce(), first);
  const expected = WARM_UP_ROUNDS.reduce((sum, round) => sum + round.roundTrips, 0);
  t.deepEqual(await first, { connections: WARM_UP_ROUNDS.length, roundTrips: expected, refused: 0 });
});

/** Starts our -d daemon under `node --trace-opt` and returns V8's whole trace once it has shown the data path compiled, or `waitMs` has passed since it listened, and it has exited on SIGTERM; no client ever connects. */
async function traceOfIdleDaemon(env: NodeJS.ProcessEnv, waitMs: number): Promise<string> {
  const { dir, cleanup } = tempDir();
  try {
    const port = await freePort();
    const args = ['--trace-opt', OUR_SPIPED, '-F', '-d', '-s', `[127.0.0.1]:${port}`, '-t', '[127.0.0.1]:9', '-k', writeKey(dir)];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'ignore'], env: { ...process.env, ...env } });
    let trace = '';
    child.stdout.on('data', (chunk: Buffer) => (trace += chunk.toString()));
    // 'close', not 'exit': the trace read so far is whole only once stdout has closed.
    const closed = new Promise((resolve) => child.once('close', resolve));
    try {
      await waitForListener({ port }, 10_000, child.pid);
      await waitUntil(() => dataPathCompiled(trace), waitMs); // a loaded machine may take seconds
      // V8 prints its trace through stdio, block-buffered on a pipe: a clean exit flushes what is left.
      child.kill('SIGTERM');
      await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 5000))]);
    } finally {
      child.kill('SIGKILL');
      await closed;
    }
    return trace;
  } finally {
    cleanup();
  }
}

/** Functions of the daemon's data path only (a daemon with no traffic compiles none): the channels' read callback, the pipe's callbacks, the output slabs, the sealer's and opener's calls, the counter check. */
const DATA_PATH = new Set(['onRead', 'plain.onData', 'openChunk', 'takeOutput', 'take', 'sealInto', 'openInto', 'spendRoom']);

/** The functions V8's trace shows compiled by an optimizing tier (Node 20: TurboFan's 'completed optimizing'; Node 24: 'completed compiling', Maglev or TurboFan). */
const compiledFunctions = (trace: string): string[] =>
  trace
    .split('\n')
    .filter((line) => /completed (optimizing|compiling)/.test(line))
    .map((line) => /<JSFunction ([^ >]*)/.exec(line)?.[1] ?? '');

/** The data-path functions among them (which ones depends on what V8 inlined into what). */
const compiledDataPath = (trace: string): Set<string> => new Set(compiledFunctions(trace).filter((name) => DATA_PATH.has(name)));

/** Whether at least two of the data path's functions were compiled. */
const dataPathCompiled = (trace: string): boolean => compiledDataPath(trace).size >= 2;

test.serial('a CLI daemon compiles its data path before any client connects; SPIPED_NATIVE_WARM_UP=0 leaves it cold', async (t) => {
  const trace = await traceOfIdleDaemon({}, 30_000);
  if (!dataPathCompiled(trace)) {
    t.log(`trace: ${trace.length} bytes; compiled: ${compiledFunctions(trace).join(' ')}`);
  }
  t.true(dataPathCompiled(trace), 'warmed up by default');
  t.false(dataPathCompiled(await traceOfIdleDaemon({ SPIPED_NATIVE_WARM_UP: '0' }, 2000)), 'not without the warm-up');
});
