// Interoperability with the reference C spiped/spipe 1.6.2: every pairing of
// our daemon and theirs in both roles, PFS and -f, spipe both ways, Unix and
// IPv6 addresses, and what each does with a wrong key, garbage and tampering.

import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import {
  exchange,
  freePort,
  referenceAvailable,
  runSpipe,
  sinkPairSetup,
  startDaemon,
  startEchoServer,
  startRelay,
  startSinkServer,
  tempDir,
  writeKey,
  type Daemon,
  type Impl,
} from './helpers/processes.js';

const IMPLS: Impl[] = referenceAvailable() ? ['ours', 'c'] : ['ours'];
const loopback = (port: number): string => `[127.0.0.1]:${port}`;

/** Sizes every pairing carries, both directions at once through an echo server. */
const SIZES = [0, 1, 1024, 1025, 3 * 1024 * 1024 + 17];

/** Starts `decryptor` -d and `encryptor` -e in front of an echo server and checks every size, then 4 at once. */
async function echoThroughPair(
  t: ExecutionContext,
  [encryptor, eFlags]: readonly [Impl, readonly string[]],
  [decryptor, dFlags]: readonly [Impl, readonly string[]],
  env: NodeJS.ProcessEnv = {},
): Promise<void> {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const key = writeKey(dir, 'key', 100);
  const echo = await startEchoServer();
  t.teardown(() => echo.server.close());
  const [dPort, ePort] = [await freePort(), await freePort()];
  const daemons: Daemon[] = [];
  t.teardown(() => Promise.all(daemons.map((d) => d.stop())));
  daemons.push(await startDaemon(decryptor, ['-d', '-s', loopback(dPort), '-t', loopback(echo.port), '-k', key, ...dFlags], { port: dPort }, env));
  daemons.push(await startDaemon(encryptor, ['-e', '-s', loopback(ePort), '-t', loopback(dPort), '-k', key, ...eFlags], { port: ePort }, env));
  for (const size of SIZES) {
    const data = randomBytes(size);
    const result = await exchange({ port: ePort }, data);
    t.is(result.ended, 'eof', `${size} bytes: connection ended by EOF`);
    t.true(result.received.equals(data), `${size} bytes came back intact (got ${result.received.length})`);
  }
  const parallel = await Promise.all([1, 2, 3, 4].map(() => {
    const data = randomBytes(512 * 1024 + 3);
    return exchange({ port: ePort }, data).then((result) => result.received.equals(data));
  }));
  t.deepEqual(parallel, [true, true, true, true]);
}

for (const encryptor of IMPLS) {
  for (const decryptor of IMPLS) {
    for (const [label, eFlags, dFlags] of [
      ['PFS', [], []],
      ['-f both', ['-f'], ['-f']],
      ['-f client, PFS server', ['-f'], []],
      ['PFS client, -g server', [], ['-g']],
    ] as const) {
      test.serial(`${encryptor} -e → ${decryptor} -d (${label}): echo of ${SIZES.join(', ')} bytes and 4 at once`, (t) =>
        echoThroughPair(t, [encryptor, eFlags], [decryptor, dFlags]),
      );
    }
    if (encryptor === 'ours' || decryptor === 'ours') {
      test.serial(`${encryptor} -e → ${decryptor} -d, ours reading by 'data' events (SPIPED_NATIVE_USER_BUFFER=0): echo of every size`, (t) =>
        echoThroughPair(t, [encryptor, []], [decryptor, []], { SPIPED_NATIVE_USER_BUFFER: '0' }),
      );
    }
  }
}

for (const [eFlag, dFlag] of [
  ['-f', '-g'],
  ['-g', '-f'],
] as const) {
  for (const encryptor of IMPLS) {
    for (const decryptor of IMPLS) {
      test.serial(`${encryptor} -e ${eFlag} → ${decryptor} -d ${dFlag}: no connection`, async (t) => {
        const { key, sink, dPort, ePort, daemons } = await sinkPairSetup((fn) => t.teardown(fn));
        daemons.push(await startDaemon(decryptor, ['-d', '-s', loopback(dPort), '-t', loopback(sink.port), '-k', key, dFlag], { port: dPort }));
        daemons.push(await startDaemon(encryptor, ['-e', '-s', loopback(ePort), '-t', loopback(dPort), '-k', key, eFlag], { port: ePort }));
        const started = Date.now();
        const result = await exchange({ port: ePort }, Buffer.from('must not arrive'));
        t.is(result.received.length, 0);
        t.not(result.ended, 'timeout');
        t.true(Date.now() - started < 3000, 'dropped promptly');
        t.true(sink.received.every((bytes) => bytes.length === 0), 'nothing reached the target');
      });
    }
  }
}

for (const client of IMPLS) {
  for (const server of IMPLS) {
    test.serial(`${client} spipe → ${server} spiped -d: stdin/stdout with half-close`, async (t) => {
      const { dir, cleanup } = tempDir();
      t.teardown(cleanup);
      const key = writeKey(dir);
      const echo = await startEchoServer();
      t.teardown(() => echo.server.close());
      const dPort = await freePort();
      const daemon = await startDaemon(server, ['-d', '-s', loopback(dPort), '-t', loopback(echo.port), '-k', key], { port: dPort });
      t.teardown(() => daemon.stop());
      for (const size of [1, 70000]) {
        const data = randomBytes(size);
        const result = await runSpipe(client, ['-t', loopback(dPort), '-k', key], data);
        t.is(result.code, 0, result.stderr);
        t.true(result.stdout.equals(data), `${size} bytes echoed through spipe`);
      }
      const wrongKey = writeKey(dir, 'wrong');
      const refused = await runSpipe(client, ['-t', loopback(dPort), '-k', wrongKey], Buffer.from('x'));
      t.is(refused.stdout.length, 0, 'nothing comes back with the wrong key');
    });
  }
}

test.serial('Unix-socket and [::1] addresses (ours and C in both roles)', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const key = writeKey(dir);
  const echo = await startEchoServer();
  t.teardown(() => echo.server.close());
  const daemons: Daemon[] = [];
  t.teardown(() => Promise.all(daemons.map((d) => d.stop())));
  for (const [encryptor, decryptor] of IMPLS.flatMap((e) => IMPLS.map((d) => [e, d] as const))) {
    const dPath = join(dir, `${encryptor}-${decryptor}.sock`);
    const ePort = await freePort('::1');
    daemons.push(await startDaemon(decryptor, ['-d', '-s', dPath, '-t', loopback(echo.port), '-k', key], { path: dPath }));
    daemons.push(await startDaemon(encryptor, ['-e', '-s', `[::1]:${ePort}`, '-t', dPath, '-k', key], { port: ePort, host: '::1' }));
    const data = randomBytes(100000);
    const result = await exchange({ port: ePort, host: '::1' }, data);
    t.true(result.received.equals(data), `${encryptor} [::1] → ${decryptor} unix socket`);
  }
});

for (const victim of IMPLS) {
  test.serial(`${victim} spiped -d drops a wrong key and garbage, and keeps serving`, async (t) => {
    const { dir, cleanup } = tempDir();
    t.teardown(cleanup);
    const key = writeKey(dir);
    const wrongKey = writeKey(dir, 'wrong');
    const sink = await startSinkServer();
    t.teardown(() => sink.server.close());
    const [dPort, goodPort, badPort] = [await freePort(), await freePort(), await freePort()];
    const daemons: Daemon[] = [];
    t.teardown(() => Promise.all(daemons.map((d) => d.stop())));
    daemons.push(await startDaemon(victim, ['-d', '-s', loopback(dPort), '-t', loopback(sink.port), '-k', key], { port: dPort }));
    daemons.push(await startDaemon('ours', ['-e', '-s', loopback(badPort), '-t', loopback(dPort), '-k', wrongKey], { port: badPort }));
    daemons.push(await startDaemon('ours', ['-e', '-s', loopback(goodPort), '-t', loopback(dPort), '-k', key], { port: goodPort }));

    const started = Date.now();
    const wrong = await exchange({ port: badPort }, Buffer.from('secret'));
    t.is(wrong.received.length, 0);
    t.not(wrong.ended, 'timeout');
    const garbage = await exchange({ port: dPort }, randomBytes(4000));
    t.not(garbage.ended, 'timeout');
    t.true(Date.now() - started < 4000, 'both dropped promptly');
    t.true(sink.received.every((bytes) => bytes.length === 0), 'nothing reached the target');

    const data = randomBytes(50000);
    const good = await exchange({ port: goodPort }, data);
    t.is(good.ended, 'eof');
    t.true(sink.received.some((bytes) => bytes.equals(data)), 'a good client still gets through');
  });
}

/** The byte offset of packet `n` in either direction's stream (after nonce and y || h). */
const packetOffset = (n: number): number => 32 + 288 + n * 1060;

for (const victim of IMPLS) {
  for (const [what, direction, offset] of [
    ['the client nonce', 'toServer', 5],
    ['the client y || h', 'toServer', 32 + 100],
    ['the server y || h', 'toClient', 32 + 287],
    ['packet 3 towards -d', 'toServer', packetOffset(3) + 500],
    ['packet 2 towards -e', 'toClient', packetOffset(2) + 1040],
  ] as const) {
    test.serial(`${victim} daemons: a bit flipped in ${what} drops the connection, forwards nothing of it, serves the next`, async (t) => {
      const { dir, cleanup } = tempDir();
      t.teardown(cleanup);
      const key = writeKey(dir);
      const sink = await startSinkServer();
      const echo = await startEchoServer();
      t.teardown(() => {
        sink.server.close();
        echo.server.close();
      });
      const toClient = direction === 'toClient';
      const [dPort, ePort, relayPort] = [await freePort(), await freePort(), await freePort()];
      const daemons: Daemon[] = [];
      t.teardown(() => Promise.all(daemons.map((d) => d.stop())));
      daemons.push(await startDaemon(victim, ['-d', '-s', loopback(dPort), '-t', loopback(toClient ? echo.port : sink.port), '-k', key], { port: dPort }));
      // The relay starts after -e is up, so that the readiness probe does not pass through it.
      daemons.push(await startDaemon(victim, ['-e', '-s', loopback(ePort), '-t', loopback(relayPort), '-k', key], { port: ePort }));
      const relay = await startRelay(relayPort, dPort, { direction, offset, bit: 3 });
      t.teardown(() => relay.close());

      const data = randomBytes(8 * 1024);
      const sinkBefore = sink.received.length;
      const started = Date.now();
      const result = await exchange({ port: ePort }, data);
      t.not(result.ended, 'timeout');
      t.true(Date.now() - started < 4000, 'dropped promptly');
      // Whatever got through is a prefix of what was sent, and nothing of the damaged packet or later.
      const forwarded = toClient ? result.received : Buffer.concat(sink.received.slice(sinkBefore));
      const packetIndex = Math.max(0, Math.floor((offset - 320) / 1060));
      t.true(forwarded.equals(data.subarray(0, forwarded.length)), 'only an undamaged prefix is forwarded');
      t.true(forwarded.length <= packetIndex * 1024, `at most ${packetIndex} packets' worth forwarded (got ${forwarded.length})`);
      t.false(result.received.equals(data), 'the client did not get a complete echo');

      const again = randomBytes(30000);
      const next = await exchange({ port: ePort }, again);
      t.is(next.ended, 'eof', 'the daemons serve the next connection');
      if (toClient) t.true(next.received.equals(again));
      else t.true(sink.received.some((bytes) => bytes.equals(again)));
    });
  }
}
