// The library entry points against the C binaries and each other: connect()
// to a C `spiped -d`, C `spipe` into createServer(), a createTunnel() pair, and
// the Duplex's backpressure, half-close, destroy and typed errors.

import test from 'ava';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer as netCreateServer, type AddressInfo, type Server } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect, createServer, createTunnel, SpipedError } from 'spiped-native';
import { handshake } from 'spiped-native/handshake';
import { hashKeyBytes } from 'spiped-native/keyfile';
import {
  C_SPIPE,
  exchange,
  freePort,
  referenceAvailable,
  startDaemon,
  startEchoServer,
  tempDir,
  writeKey,
} from './helpers/processes.js';

const HAVE_C = referenceAvailable();
const cTest = HAVE_C ? test : test.skip;

/** Writes `data`, ends, and resolves to everything read until EOF. */
function roundTrip(stream: Duplex, data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => parts.push(chunk));
    stream.on('end', () => resolve(Buffer.concat(parts)));
    stream.on('error', reject);
    stream.end(data);
  });
}

/** Listens on a free loopback port; resolves to the port. */
function listen(server: Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

/** The SpipedError code of a rejection. */
async function rejectionCode(promise: Promise<unknown>): Promise<string | undefined> {
  const err = await promise.then(
    () => undefined,
    (error: unknown) => error,
  );
  return err instanceof SpipedError ? err.code : `not a SpipedError: ${String(err)}`;
}

cTest('connect() to a C spiped -d, with the key as a path and as bytes', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const keyPath = writeKey(dir, 'key', 64);
  const echo = await startEchoServer();
  t.teardown(() => echo.server.close());
  const port = await freePort();
  const daemon = await startDaemon('c', ['-d', '-s', `[127.0.0.1]:${port}`, '-t', `[127.0.0.1]:${echo.port}`, '-k', keyPath], { port });
  t.teardown(() => daemon.stop());
  for (const key of [keyPath, new Uint8Array(readFileSync(keyPath))]) {
    const data = randomBytes(300_000);
    const stream = await connect({ target: `127.0.0.1:${port}`, key });
    t.true((await roundTrip(stream, data)).equals(data));
  }
  const fast = await connect({ target: `[127.0.0.1]:${port}`, key: keyPath, fast: true });
  t.true((await roundTrip(fast, Buffer.from('fast'))).equals(Buffer.from('fast')));
});

cTest('C spipe into createServer(): authenticated peers reach onConnection as plaintext', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const keyPath = writeKey(dir);
  const server = createServer({ key: keyPath }, (plain) => plain.pipe(plain));
  t.teardown(() => server.close());
  const port = await listen(server);
  const data = randomBytes(100_000);
  const child = spawn(C_SPIPE, ['-t', `[127.0.0.1]:${port}`, '-k', keyPath]);
  const out: Buffer[] = [];
  child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
  child.stdin.end(data);
  const code = await new Promise((resolve) => child.on('close', resolve));
  t.is(code, 0);
  t.true(Buffer.concat(out).equals(data));
});

test('a createTunnel() pair carries data; close() drains like SIGTERM', async (t) => {
  const key = randomBytes(32);
  const echo = await startEchoServer();
  t.teardown(() => echo.server.close());
  const decrypt = await createTunnel({ mode: 'decrypt', source: '[127.0.0.1]:0', target: `[127.0.0.1]:${echo.port}`, key });
  const dPort = decrypt.address();
  if (dPort.kind !== 'inet') throw new Error('expected a TCP address');
  const encrypt = await createTunnel({ mode: 'encrypt', source: '[127.0.0.1]:0', target: `[127.0.0.1]:${dPort.port}`, key, fast: true });
  const ePort = encrypt.address();
  if (ePort.kind !== 'inet') throw new Error('expected a TCP address');
  const data = randomBytes(2_000_000);
  const result = await exchange({ port: ePort.port }, data);
  t.true(result.received.equals(data));
  await Promise.all([encrypt.close(), decrypt.close()]);
  const refused = await exchange({ port: ePort.port }, Buffer.from('x'), 2000);
  t.is(refused.ended, 'error', 'a closed tunnel accepts nothing');
});

test('the Duplex: half-close, backpressure and destroy', async (t) => {
  const key = randomBytes(32);
  const acceptedStreams: Duplex[] = [];
  let onAccepted: () => void = () => {};
  const server = createServer({ key }, (plain) => {
    acceptedStreams.push(plain);
    onAccepted();
  });
  t.teardown(() => server.close());
  const port = await listen(server);
  const nextAccepted = async (): Promise<Duplex> => {
    while (acceptedStreams.length === 0) await new Promise<void>((resolve) => (onAccepted = resolve));
    return acceptedStreams.shift()!;
  };
  const client = await connect({ target: `[127.0.0.1]:${port}`, key });
  const serverSide = await nextAccepted();

  // Backpressure: the server does not read; the client's writes must start reporting a full buffer.
  serverSide.pause();
  const block = randomBytes(64 * 1024);
  let written = 0;
  while (client.write(block)) {
    written += block.length;
    if (written > 256 * 1024 * 1024) break;
  }
  written += block.length;
  t.true(written < 64 * 1024 * 1024, `client.write() returned false after ${written} bytes`);

  // Now the server reads everything; after the client's EOF it still replies (half-close).
  const received = new Promise<number>((resolve) => {
    let total = 0;
    serverSide.on('data', (chunk: Buffer) => (total += chunk.length));
    serverSide.on('end', () => {
      serverSide.end(Buffer.from('reply after EOF'));
      resolve(total);
    });
  });
  serverSide.resume();
  const reply = new Promise<string>((resolve) => {
    const parts: Buffer[] = [];
    client.on('data', (chunk: Buffer) => parts.push(chunk));
    client.on('end', () => resolve(Buffer.concat(parts).toString()));
  });
  client.end();
  t.is(await received, written);
  t.is(await reply, 'reply after EOF');

  // destroy() closes the socket underneath; the peer sees the end of the stream and can close in turn.
  const second = await connect({ target: `[127.0.0.1]:${port}`, key });
  const secondServerSide = await nextAccepted();
  secondServerSide.on('error', () => {});
  const peerEnded = new Promise<void>((resolve) => secondServerSide.once('end', () => resolve()));
  secondServerSide.resume(); // a peer's close is seen by reading, as with any socket
  const localClosed = new Promise<void>((resolve) => second.once('close', () => resolve()));
  second.destroy();
  await localClosed;
  t.true(second.socket.destroyed, 'the encrypted socket is destroyed with the stream');
  await peerEnded;
  const peerClosed = new Promise<void>((resolve) => secondServerSide.once('close', () => resolve()));
  secondServerSide.end();
  await peerClosed;
  t.true(secondServerSide.destroyed);
});

/** A promise with its resolver (Node 20 lacks Promise.withResolvers). */
function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve: (value: T) => void = () => {};
  const promise = new Promise<T>((settle) => (resolve = settle));
  return { promise, resolve };
}

test('typed errors: ECONNECT, EHANDSHAKE, ETIMEOUT, EBADPACKET', async (t) => {
  const key = randomBytes(32);
  const closedPort = await freePort();
  t.is(await rejectionCode(connect({ target: `[127.0.0.1]:${closedPort}`, key })), 'ECONNECT');

  const server = createServer({ key: randomBytes(32) }, () => {});
  t.teardown(() => server.close());
  t.is(await rejectionCode(connect({ target: `[127.0.0.1]:${await listen(server)}`, key })), 'EHANDSHAKE');

  const silent = netCreateServer(() => {});
  t.teardown(() => silent.close());
  const silentPort = await listen(silent);
  const started = Date.now();
  t.is(await rejectionCode(connect({ target: `[127.0.0.1]:${silentPort}`, key, timeout: 0.4 })), 'ETIMEOUT');
  t.true(Date.now() - started < 2000);

  // A peer that completes the handshake, then sends a forged packet.
  const forger = netCreateServer({ pauseOnConnect: true }, (socket) => {
    socket.on('error', () => {});
    void handshake(socket, { role: 'server', key: hashKeyBytes(key), fast: false, requirePfs: false, timeoutMs: 5000 }).then(() =>
      socket.write(randomBytes(1060)),
    );
  });
  t.teardown(() => forger.close());
  const victim = await connect({ target: `[127.0.0.1]:${await listen(forger)}`, key });
  const failure = await new Promise<unknown>((resolve) => {
    victim.on('data', () => resolve(new Error('forged data was delivered')));
    victim.on('error', resolve);
  });
  t.is(failure instanceof SpipedError ? failure.code : String(failure), 'EBADPACKET');

  await t.throwsAsync(connect({ target: 'no-port-here', key }), { instanceOf: SpipedError });
  await t.throwsAsync(connect({ target: '[127.0.0.1]:1', key, fast: true, requirePfs: true }), { instanceOf: TypeError });
});

test('a slow reader gets every byte after a clean close (nothing cut off by the socket closing)', async (t) => {
  const key = randomBytes(32);
  const total = 300_000;
  const server = createServer({ key, fast: true }, (plain) => {
    plain.resume();
    plain.on('end', () => plain.end(Buffer.alloc(total, 0x61)));
  });
  t.teardown(() => server.close());
  const client = await connect({ target: `[127.0.0.1]:${await listen(server)}`, key, fast: true });
  client.end('request');
  let received = 0;
  let failure: unknown = null;
  client.on('data', (chunk: Buffer) => {
    received += chunk.length;
    client.pause();
    setTimeout(() => client.resume(), 2);
  });
  client.on('error', (err) => (failure = err));
  await new Promise((resolve) => client.on('close', resolve));
  t.is(failure, null);
  t.is(received, total);
});
