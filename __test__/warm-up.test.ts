// The daemon's warm-up (warm-up.ts): it runs whole connections through the real
// connection code in both modes (every round trip echoed), leaves no socket open
// behind it, runs once per process, and in a CLI daemon it has V8 compile the
// data path before any client connected (and does not with SPIPED_NATIVE_WARM_UP=0).

import test from 'ava';
import { spawn } from 'node:child_process';
import { WARM_UP_ROUNDS, warmUpConnections, warmUpOnce } from 'spiped-native/warm-up';
import { waitUntil } from './helpers/cli-run.js';
import { OUR_SPIPED, freePort, tempDir, waitForListener, writeKey } from './helpers/processes.js';

/** The sockets and servers this process has open now. */
const openSockets = (): number => process.getActiveResourcesInfo().filter((kind) => kind.startsWith('TCP') || kind.startsWith('Pipe')).length;

for (const fast of [true, false]) {
  test.serial(`${fast ? '-f' : 'PFS'}: every round's bytes and round trips come back through both pipes, and nothing is left open`, async (t) => {
    const before = openSockets();
    const rounds = [
      { bulkBytes: 200_000, roundTrips: 3 },
      { bulkBytes: 1, roundTrips: 50 },
    ];
    const outcome = await warmUpConnections({ fast, keepAlive: true }, rounds);
    t.deepEqual(outcome, { connections: 2, roundTrips: 53 });
    t.true(await waitUntil(() => openSockets() === before, 2000), `still open: ${process.getActiveResourcesInfo().join(', ')}`);
  });
}

test.serial('the default rounds, once per process: a second call gets the first one\'s outcome', async (t) => {
  const first = warmUpOnce({ fast: true, keepAlive: true });
  t.is(warmUpOnce({ fast: false, keepAlive: false }), first);
  const expected = WARM_UP_ROUNDS.reduce((sum, round) => sum + round.roundTrips, 0);
  t.deepEqual(await first, { connections: WARM_UP_ROUNDS.length, roundTrips: expected });
});

/** Starts our -d daemon under `node --trace-opt` and returns V8's trace once it has listened for a while, with no client ever connecting. */
async function traceOfIdleDaemon(env: NodeJS.ProcessEnv): Promise<string> {
  const { dir, cleanup } = tempDir();
  try {
    const port = await freePort();
    const args = ['--trace-opt', OUR_SPIPED, '-F', '-d', '-f', '-s', `[127.0.0.1]:${port}`, '-t', '[127.0.0.1]:9', '-k', writeKey(dir)];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'ignore'], env: { ...process.env, ...env } });
    let trace = '';
    child.stdout.on('data', (chunk: Buffer) => (trace += chunk.toString()));
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      await waitForListener({ port }, 10_000, child.pid);
      await new Promise((resolve) => setTimeout(resolve, 1500));
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
    return trace;
  } finally {
    cleanup();
  }
}

/** Whether V8's trace shows the packet pipe's sealing callback picked for optimization. */
const dataPathCompiled = (trace: string): boolean => trace.split('\n').some((line) => /optimi[sz]/i.test(line) && /<JSFunction plain\.onData\b/.test(line));

test.serial('a CLI daemon compiles its data path before any client connects; SPIPED_NATIVE_WARM_UP=0 leaves it cold', async (t) => {
  t.true(dataPathCompiled(await traceOfIdleDaemon({})), 'warmed up by default');
  t.false(dataPathCompiled(await traceOfIdleDaemon({ SPIPED_NATIVE_WARM_UP: '0' })), 'not without the warm-up');
});
