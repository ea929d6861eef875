// Reload (--reload-on-sighup, Tunnel.reload()): SIGHUP re-reads every key file
// (C spipe with the new key gets in, the old key is refused) and re-resolves the
// target, live connections carry on untouched, an unreadable key file keeps all
// the old keys with a warning; without the flag SIGHUP ends ours as it ends the
// C daemon; replaced keys are wiped once no handshake uses them.

import test from 'ava';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, Dispatcher, hashKeyBytes } from 'spiped-native';
import { KeyRing } from 'spiped-native/key-ring';
import { fastDispatcherBase, freePort, loopbackEndpoint, referenceAvailable, runSpipe, startDaemon, startEchoServer, tempDir, writeKey, type Impl } from './helpers/processes.js';
import { waitUntil } from './helpers/cli-run.js';

const HAVE_C = referenceAvailable();
const cTest = HAVE_C ? test : test.skip;
const loopback = (port: number): string => `[127.0.0.1]:${port}`;

/** Resolves to everything `stream` delivers until its end. */
function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    stream.on('data', (chunk: Buffer) => (text += chunk.toString()));
    stream.on('end', () => resolve(text));
  });
}

/** Counts occurrences of `line` in `text`. */
const count = (text: string, line: string): number => text.split(line).length - 1;

cTest('SIGHUP re-reads the key files: C spipe with the new key gets in, the old one is refused, a live connection carries on', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const keyPath = writeKey(dir, 'rotating.key');
  const oldCopy = join(dir, 'old.key');
  copyFileSync(keyPath, oldCopy); // the clients keep the old key
  const extraPath = writeKey(dir, 'extra.key');
  const echo = await startEchoServer();
  t.teardown(() => echo.server.close());
  const port = await freePort();
  const daemon = await startDaemon('ours', ['--reload-on-sighup', '-d', '-s', loopback(port), '-t', loopback(echo.port), '-k', keyPath, '-k', extraPath], { port });
  t.teardown(() => daemon.stop());

  const first = await runSpipe('c', ['-t', loopback(port), '-k', oldCopy], Buffer.from('old'));
  t.is(first.stdout.toString(), 'old', first.stderr);
  const live = await connect({ target: loopback(port), key: oldCopy });
  t.teardown(() => live.destroy());
  live.write('before ');

  writeFileSync(keyPath, randomBytes(32)); // the new key, under the same path
  daemon.child.kill('SIGHUP');
  t.true(await waitUntil(() => count(daemon.stderr(), 'Reloaded: keys read again, target re-resolved') === 1), daemon.stderr());
  const withNew = await runSpipe('c', ['-t', loopback(port), '-k', keyPath], Buffer.from('new'));
  t.is(withNew.code, 0, withNew.stderr);
  t.is(withNew.stdout.toString(), 'new');
  const withOld = await runSpipe('c', ['-t', loopback(port), '-k', oldCopy], Buffer.from('old'));
  t.not(withOld.code, 0);
  t.is(withOld.stdout.length, 0);
  const reply = readAll(live);
  live.end('after');
  t.is(await reply, 'before after', 'the connection made with the old key is untouched');

  // An unreadable key file (here a directory) keeps every old key, the other file's too.
  rmSync(extraPath);
  mkdirSync(extraPath);
  daemon.child.kill('SIGHUP');
  t.true(await waitUntil(() => count(daemon.stderr(), 'Reloaded: keys kept, target re-resolved') === 1), daemon.stderr());
  t.regex(daemon.stderr(), new RegExp(`spiped: Reload: keeping all the old keys: Cannot read key file ${extraPath}: `));
  const stillNew = await runSpipe('c', ['-t', loopback(port), '-k', keyPath], Buffer.from('still'));
  t.is(stillNew.stdout.toString(), 'still', stillNew.stderr);
  t.is(daemon.child.exitCode, null, 'the daemon lives on');
});

cTest('without --reload-on-sighup, SIGHUP ends ours as it ends the C spiped', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const key = writeKey(dir);
  const ends: (string | null)[] = [];
  for (const impl of ['c', 'ours'] as Impl[]) {
    const port = await freePort();
    const daemon = await startDaemon(impl, ['-d', '-s', loopback(port), '-t', '[127.0.0.1]:1', '-k', key], { port });
    t.teardown(() => daemon.stop());
    const exited = new Promise<string | null>((resolve) => daemon.child.once('exit', (_code, signal) => resolve(signal)));
    daemon.child.kill('SIGHUP');
    ends.push(await exited);
  }
  t.deepEqual(ends, ['SIGHUP', 'SIGHUP']);
});

test('Tunnel.reload() re-resolves the target and replaces the keys; the old ones are wiped, and a failed read keeps them', async (t) => {
  const endpoint = loopbackEndpoint;
  const original = hashKeyBytes(randomBytes(32));
  const fresh = hashKeyBytes(randomBytes(32));
  let lookups = 0;
  let failRead = false;
  const dispatcher = await Dispatcher.listen({
    ...fastDispatcherBase('decrypt', [original]),
    reloadKeys: async () => {
      if (failRead) throw new Error('unreadable');
      return [fresh];
    },
    target: { kind: 'inet', host: 'moving.invalid', port: 1, literal: false },
    targets: [endpoint(1)],
    resolveEverySeconds: null,
    maxConnections: 0,
    resolve: async () => [endpoint(1000 + ++lookups)],
  });
  t.teardown(() => dispatcher.close());
  const warnings: string[] = [];
  dispatcher.on('warning', (message) => warnings.push(message));
  t.deepEqual(await dispatcher.reload(), { keys: true, target: true });
  t.deepEqual(dispatcher.currentTargets(), [endpoint(1001)]);
  t.true(original.every((byte) => byte === 0), 'the replaced key was wiped (no handshake held it)');
  failRead = true;
  const before = Buffer.from(fresh);
  t.deepEqual(await dispatcher.reload(), { keys: false, target: true });
  t.true(fresh.equals(before), 'a failed read keeps the current keys');
  t.deepEqual(warnings, ['Reload: keeping all the old keys: unreadable']);
  await dispatcher.close();
  t.true(fresh.every((byte) => byte === 0), 'wiped once drained');
});

test('KeyRing: a replaced generation is wiped only once the last handshake holding it is over', (t) => {
  const first = [Buffer.alloc(32, 1)];
  const ring = new KeyRing(first);
  const lease = ring.acquire();
  ring.replace([Buffer.alloc(32, 2)]);
  t.is(first[0]![0], 1, 'still in use by a handshake');
  t.is(ring.keys[0]![0], 2);
  lease.release();
  lease.release(); // twice is harmless
  t.true(first[0]!.every((byte) => byte === 0));
  const current = ring.keys;
  const late = ring.acquire();
  ring.close();
  t.is(current[0]![0], 2, 'held past close()');
  late.release();
  t.true(current[0]!.every((byte) => byte === 0));
  const afterClose = [Buffer.alloc(32, 3)];
  ring.replace(afterClose);
  t.true(afterClose[0]!.every((byte) => byte === 0), 'a reload after close wipes what it brought');
});
