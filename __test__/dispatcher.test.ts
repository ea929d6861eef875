// The dispatcher's target re-resolution (-r): new addresses are used once
// resolved, a failed re-resolution keeps the old ones, and a slow lookup is never
// overlapped by the next. Also -b: outgoing
// connections leave from the bind address, for spiped, spipe and connect().

import test from 'ava';
import { randomBytes } from 'node:crypto';
import type { AddressInfo, Server } from 'node:net';
import { connect, createServer, Dispatcher, hashKeyBytes, SpipedError } from 'spiped-native';
import { exchange, fastDispatcherBase, freePort, loopbackEndpoint, OUR_SPIPE, startDaemon, tempDir, writeKey } from './helpers/processes.js';
import { waitUntil } from './helpers/cli-run.js';
import { spawn } from 'node:child_process';

/** Listens on a free loopback port; resolves to the port. */
function listen(server: Server, host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve) => server.listen(0, host, () => resolve((server.address() as AddressInfo).port)));
}

const endpoint = loopbackEndpoint;

/** The options of an encrypting -f dispatcher on a free loopback port, keyed by `keyFile` (the key file's bytes). */
const encryptingDispatcher = (keyFile: Buffer) => fastDispatcherBase('encrypt', [hashKeyBytes(keyFile)]);

test('-r: the target is re-resolved on schedule, and a failed lookup keeps the old addresses', async (t) => {
  const key = randomBytes(32);
  const seen: string[] = [];
  const backend = (name: string): Server =>
    createServer({ key, fast: true }, (plain) => {
      seen.push(name);
      plain.resume(); // read to the peer's EOF, so that the connection can close
      plain.end(name);
    });
  const first = backend('first');
  const second = backend('second');
  t.teardown(() => {
    first.close();
    second.close();
  });
  const [firstPort, secondPort] = [await listen(first), await listen(second)];
  let lookups = 0;
  const dispatcher = await Dispatcher.listen({
    ...encryptingDispatcher(key),
    target: { kind: 'inet', host: 'service.invalid', port: 1, literal: false },
    targets: [endpoint(firstPort)],
    resolveEverySeconds: 0.2,
    maxConnections: 0,
    // The first re-resolution moves the service; every later one fails.
    resolve: async () => {
      lookups += 1;
      if (lookups === 1) return [endpoint(secondPort)];
      throw new SpipedError('ERESOLVE', 'Error resolving socket address: service.invalid:1');
    },
  });
  const warnings: string[] = [];
  dispatcher.on('warning', (message) => warnings.push(message));
  t.teardown(() => dispatcher.close());
  const port = (dispatcher.address() as { port: number }).port;

  t.is((await exchange({ port }, Buffer.from('x'))).received.toString(), 'first');
  // Every 0.2 s; polled rather than slept for, as another test's work can hold this thread up.
  t.true(await waitUntil(() => lookups >= 2), `re-resolved ${lookups} times`);
  t.is((await exchange({ port }, Buffer.from('x'))).received.toString(), 'second', 'the new address is used');
  t.deepEqual(dispatcher.currentTargets(), [endpoint(secondPort)], 'a failed lookup kept the last good addresses');
  t.true(warnings.some((message) => message.includes('keeping the old addresses')));
  t.deepEqual(seen, ['first', 'second']);
});

test('-r: a lookup slower than the interval is never overlapped; the next is armed once it finished', async (t) => {
  let inFlight = 0;
  let most = 0;
  let lookups = 0;
  const dispatcher = await Dispatcher.listen({
    ...encryptingDispatcher(randomBytes(32)),
    target: { kind: 'inet', host: 'slow.invalid', port: 1, literal: false },
    targets: [endpoint(1)],
    resolveEverySeconds: 0.02,
    maxConnections: 0,
    resolve: async () => {
      lookups += 1;
      inFlight += 1;
      most = Math.max(most, inFlight);
      await new Promise((resolve) => setTimeout(resolve, 150)); // 7 intervals long
      inFlight -= 1;
      return [endpoint(2)];
    },
  });
  t.true(await waitUntil(() => lookups >= 3), `looked up ${lookups} times`);
  await dispatcher.close();
  const after = lookups;
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.is(most, 1, 'never two lookups at once');
  t.is(lookups, after, 'no lookup after close()');
});

test('-b: outgoing connections of spiped, spipe and connect() leave from the bind address', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const keyPath = writeKey(dir);
  const peers: string[] = [];
  // The decrypting side is our library server; it records where each connection came from.
  const server = createServer({ key: keyPath }, (plain) => {
    peers.push(plain.socket.remoteAddress ?? '?');
    plain.resume();
    plain.end('ok');
  });
  t.teardown(() => server.close());
  const serverPort = await listen(server, '0.0.0.0');

  const ePort = await freePort();
  const daemon = await startDaemon('ours', ['-e', '-s', `[127.0.0.1]:${ePort}`, '-t', `[127.0.0.1]:${serverPort}`, '-k', keyPath, '-b', '[127.0.0.2]'], { port: ePort });
  t.teardown(() => daemon.stop());
  t.is((await exchange({ port: ePort }, Buffer.from('x'))).received.toString(), 'ok');

  const spipe = spawn(process.execPath, [OUR_SPIPE, '-t', `[127.0.0.1]:${serverPort}`, '-k', keyPath, '-b', '[127.0.0.3]:0']);
  let spipeOut = '';
  spipe.stdout.on('data', (chunk: Buffer) => (spipeOut += chunk.toString()));
  spipe.stdin.end('x');
  t.is(await new Promise((resolve) => spipe.on('close', resolve)), 0);
  t.is(spipeOut, 'ok');

  const stream = await connect({ target: `[127.0.0.1]:${serverPort}`, key: keyPath, bind: '[127.0.0.4]' });
  stream.resume();
  stream.end();
  await new Promise((resolve) => stream.on('close', resolve));
  t.deepEqual(peers, ['127.0.0.2', '127.0.0.3', '127.0.0.4']);
});
