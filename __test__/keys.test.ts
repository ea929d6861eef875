// Several keys on the decrypting side (zero-downtime rotation): C spipe with the
// old key and with the new key both get through one of our `spiped -d -k new -k
// old`, a third key is refused; the parser's limits (its parity with the
// reference for a second -k outside -d is in cli.test.ts); the library's key
// lists; matchDhMessage itself.

import test from 'ava';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { connect, createServer, createTunnel, SpipedError } from 'spiped-native';
import { authenticateDhValue, DH_ONE, MAX_SERVER_KEYS, matchDhMessage } from 'spiped-native/handshake';
import { OUR_SPIPED, freePort, referenceAvailable, runSpipe, startDaemon, startEchoServer, tempDir, writeKey } from './helpers/processes.js';
import { runCli } from './helpers/cli-run.js';

const HAVE_C = referenceAvailable();
const cTest = HAVE_C ? test : test.skip;
const loopback = (port: number): string => `[127.0.0.1]:${port}`;

cTest('C spipe with the old key and with the new key both reach the target through one -d -k new -k old; a third key is refused', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const oldKey = writeKey(dir, 'old.key');
  const newKey = writeKey(dir, 'new.key');
  const otherKey = writeKey(dir, 'other.key');
  const echo = await startEchoServer();
  t.teardown(() => echo.server.close());
  const port = await freePort();
  const daemon = await startDaemon('ours', ['-d', '-s', loopback(port), '-t', loopback(echo.port), '-k', newKey, '-k', oldKey], { port });
  t.teardown(() => daemon.stop());
  for (const [key, flags] of [
    [oldKey, []],
    [newKey, []],
    [oldKey, ['-f']],
    [newKey, ['-f']],
  ] as const) {
    const data = randomBytes(5000);
    const result = await runSpipe('c', ['-t', loopback(port), '-k', key, ...flags], data);
    t.is(result.code, 0, `${key} ${flags.join(' ')}: ${result.stderr}`);
    t.true(result.stdout.equals(data), `${key} ${flags.join(' ')} echoed`);
  }
  const echoedBefore = echo.connections();
  const refused = await runSpipe('c', ['-t', loopback(port), '-k', otherKey], Buffer.from('must not arrive'));
  t.not(refused.code, 0);
  t.is(refused.stdout.length, 0);
  t.true(echo.connections() - echoedBefore <= 1, 'the target sees at most the connection -d opened while handshaking');
});

cTest('a C spiped -e with either key reaches the target through our -d holding both', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const keys = [writeKey(dir, 'a.key'), writeKey(dir, 'b.key')];
  const echo = await startEchoServer();
  t.teardown(() => echo.server.close());
  const dPort = await freePort();
  const d = await startDaemon('ours', ['-d', '-s', loopback(dPort), '-t', loopback(echo.port), '-k', keys[0]!, '-k', keys[1]!], { port: dPort });
  t.teardown(() => d.stop());
  for (const key of keys) {
    const ePort = await freePort();
    const e = await startDaemon('c', ['-e', '-s', loopback(ePort), '-t', loopback(dPort), '-k', key], { port: ePort });
    t.teardown(() => e.stop());
    const stream = await connect({ target: loopback(dPort), key }); // and in-process
    stream.end('x');
    const reply = await new Promise<Buffer>((resolve) => {
      const parts: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => parts.push(chunk));
      stream.on('end', () => resolve(Buffer.concat(parts)));
    });
    t.is(reply.toString(), 'x');
  }
});

test('-d takes at most 16 -k, standard input once; an unreadable one of several is named', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const key = writeKey(dir);
  const many = Array.from({ length: MAX_SERVER_KEYS + 1 }, () => ['-k', key]).flat();
  const tooMany = await runCli(OUR_SPIPED, ['-F', '-d', '-s', '[127.0.0.1]:1', '-t', '[127.0.0.1]:2', ...many], { dir });
  t.is(tooMany.code, 1);
  t.true(tooMany.stderr.startsWith(`spiped: At most ${MAX_SERVER_KEYS} key files (-k)\nusage: spiped`), tooMany.stderr);
  const stdinTwice = await runCli(OUR_SPIPED, ['-F', '-d', '-s', '[127.0.0.1]:1', '-t', '[127.0.0.1]:2', '-k', '-', '-k', '-'], { dir });
  t.is(stdinTwice.code, 1);
  t.true(stdinTwice.stderr.startsWith('spiped: Standard input (-k -) can be read only once\n'), stdinTwice.stderr);
  const port = await freePort();
  const missing = join(dir, 'missing.key');
  const bad = await runCli(OUR_SPIPED, ['-F', '-d', '-s', loopback(port), '-t', '[127.0.0.1]:2', '-k', key, '-k', missing], { dir });
  t.is(bad.code, 1);
  t.is(bad.stderr, `spiped: Cannot open file: ${missing}: No such file or directory\nspiped: Error reading shared secret\n`);
});

test('createServer() and a decrypting createTunnel() take key lists; clients and encrypting tunnels refuse them', async (t) => {
  const a = randomBytes(32);
  const b = randomBytes(32);
  const server = createServer({ key: [a, b] }, (plain) => plain.pipe(plain));
  t.teardown(() => server.close());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  for (const key of [a, b]) {
    const stream = await connect({ target: loopback(port), key });
    stream.end('hi');
    const reply = await new Promise<string>((resolve) => {
      let text = '';
      stream.on('data', (chunk: Buffer) => (text += chunk.toString()));
      stream.on('end', () => resolve(text));
    });
    t.is(reply, 'hi');
  }
  const refused = await connect({ target: loopback(port), key: randomBytes(32) }).then(
    () => 'connected',
    (err: unknown) => (err instanceof SpipedError ? err.code : String(err)),
  );
  t.is(refused, 'EHANDSHAKE');
  await t.throwsAsync(connect({ target: loopback(port), key: [a, b] }), { instanceOf: TypeError, message: /takes one/ });
  await t.throwsAsync(createTunnel({ mode: 'encrypt', source: '[127.0.0.1]:0', target: loopback(port), key: [a, b] }), { instanceOf: TypeError });
  await t.throwsAsync(createTunnel({ mode: 'decrypt', source: '[127.0.0.1]:0', target: loopback(port), key: [] }), { instanceOf: TypeError, message: /at least one/ });
});

test('matchDhMessage tries every key and names the first that verifies', (t) => {
  const keys = [randomBytes(32), randomBytes(32), randomBytes(32)];
  for (let i = 0; i < keys.length; i++) {
    const message = authenticateDhValue(keys[i]!, DH_ONE);
    t.is(matchDhMessage(keys, message), i);
    t.is(matchDhMessage([keys[i]!, keys[i]!], message), 0);
  }
  t.is(matchDhMessage(keys, authenticateDhValue(randomBytes(32), DH_ONE)), -1);
});
