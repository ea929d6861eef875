// Channels (channel.ts) on real loopback sockets, on libuv handles and on
// net.Socket alike: bytes whole and in order, half-close (EOF one way while the
// other keeps flowing; both ended => both closed), backpressure and drain, a
// destroy that reaches the peer, connect failures with Node's codes, and each
// channel's ends.

import test from 'ava';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { connect, createServer, type AddressInfo } from 'node:net';
import { SocketChannel, acceptChannels, channelKind, dialChannel, type Channel } from 'spiped-native/channel';
import { REPO_ROOT, channelPair, socketPair } from './helpers/processes.js';

/** Two connected channels [dialed, accepted] of one kind. */
type PairMaker = () => Promise<[Channel, Channel]>;

const kinds: [string, PairMaker][] = [
  [`default (${channelKind()})`, channelPair],
  [
    'net.Socket',
    async () => {
      const [client, accepted] = await socketPair();
      if (client.connecting) await new Promise((resolve) => client.once('connect', resolve));
      return [new SocketChannel(client), new SocketChannel(accepted)];
    },
  ],
];

/** Collects what `channel` reads (copies), resolving at its EOF. */
function collect(channel: Channel): { chunks: Buffer[]; ended: Promise<Buffer> } {
  const chunks: Buffer[] = [];
  channel.onData = (chunk) => chunks.push(Buffer.from(chunk));
  const ended = new Promise<Buffer>((resolve) => (channel.onEnd = () => resolve(Buffer.concat(chunks))));
  channel.resume();
  return { chunks, ended };
}

/** Resolves with the error (or null) `channel` closes with. */
function closed(channel: Channel): Promise<Error | null> {
  return new Promise((resolve) => (channel.onClose = resolve));
}

for (const [kind, makePair] of kinds) {
  test(`${kind}: 4 MiB each way at once, whole and in order; half-close one way, the other goes on; both ended closes both`, async (t) => {
    const [a, b] = await makePair();
    const fromA = randomBytes(4 << 20);
    const fromB = randomBytes(4 << 20);
    const [aClosed, bClosed] = [closed(a), closed(b)];
    const atB = collect(b);
    const atA = collect(a);
    /** Writes `data` in 64 KiB pieces with backpressure, then ends. */
    const send = async (channel: Channel, data: Buffer): Promise<void> => {
      for (let at = 0; at < data.length; at += 65536) {
        if (!channel.write(data.subarray(at, at + 65536), null)) await new Promise<void>((resolve) => (channel.onDrain = resolve));
      }
      channel.end();
    };
    await send(a, fromA);
    t.true((await atB.ended).equals(fromA), 'a -> b whole, then EOF');
    t.false(b.destroyed, 'b is still open for writing after its EOF');
    await send(b, fromB);
    t.true((await atA.ended).equals(fromB), 'b -> a whole after the other way ended');
    t.deepEqual(await Promise.all([aClosed, bClosed]), [null, null], 'both directions ended: both closed, cleanly');
    t.true(a.closed && b.closed);
  });

  test(`${kind}: write() says wait when the peer does not read; onDrain once it does; pause() holds bytes until resume()`, async (t) => {
    const [a, b] = await makePair();
    const piece = Buffer.alloc(64 * 1024, 0x61);
    let sent = 0;
    while (a.write(piece, null)) sent += piece.length;
    sent += piece.length;
    t.true(sent < 64 << 20, 'writes stop being accepted while nobody reads');
    const drained = new Promise<void>((resolve) => (a.onDrain = resolve));
    let received = 0;
    b.onData = (chunk) => {
      received += chunk.length;
      if (received >= sent / 2 && received - chunk.length < sent / 2) {
        b.pause();
        setTimeout(() => b.resume(), 100);
      }
    };
    b.resume();
    await drained;
    a.end();
    await new Promise<void>((resolve) => (b.onEnd = resolve));
    t.is(received, sent);
    a.destroy();
    b.destroy();
  });

  test(`${kind}: destroy() closes at once and the peer sees the end; later writes are refused, not thrown`, async (t) => {
    const [a, b] = await makePair();
    const bClosed = closed(b);
    const atB = collect(b);
    t.true(a.write(Buffer.from('last words'), null));
    const aClosed = closed(a);
    a.destroy();
    t.true(a.destroyed);
    t.is(await aClosed, null, 'a deliberate destroy closes without an error');
    let written = false;
    t.false(a.write(Buffer.from('too late'), () => (written = true)));
    await new Promise((resolve) => setImmediate(resolve));
    t.true(written, 'the refused write gives its buffer back');
    t.is((await atB.ended).toString(), 'last words', 'what was written before arrives, then EOF');
    b.destroy();
    t.is(await bClosed, null);
  });

  test(`${kind}: ends() names both ends`, async (t) => {
    const [a, b] = await makePair();
    const [ea, eb] = [a.ends(), b.ends()];
    t.is(ea.remoteAddress, '127.0.0.1');
    t.is(ea.remotePort, eb.localPort);
    t.is(eb.remotePort, ea.localPort);
    t.is(eb.remoteFamily, 'IPv4');
    a.destroy();
    b.destroy();
  });
}

test('dialChannel: a refused connection rejects with ECONNREFUSED and leaves nothing open; a timeout can destroy an attempt', async (t) => {
  const server = createServer().listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  const refused = await t.throwsAsync(dialChannel({ kind: 'inet', address: '127.0.0.1', family: 4, port }, null, () => {}));
  t.is((refused as NodeJS.ErrnoException).code, 'ECONNREFUSED');
  t.regex(refused!.message, new RegExp(`connect ECONNREFUSED 127\\.0\\.0\\.1:${port}`));
  // 192.0.2.1 (TEST-NET-1) is never answered here: the attempt is destroyed while it is pending.
  const pending = dialChannel({ kind: 'inet', address: '192.0.2.1', family: 4, port: 9 }, null, (attempt) =>
    setTimeout(() => attempt.destroy(new Error('timed out')), 50),
  );
  await t.throwsAsync(pending);
});

test('dialChannel: Unix sockets, both ways', async (t) => {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'channel-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 's');
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('data', (d) => socket.write(d));
    socket.on('end', () => socket.end());
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const channel = await dialChannel({ kind: 'unix', path }, null, () => {});
  const echo = collect(channel);
  channel.write(Buffer.from('over a unix socket'), null);
  channel.end();
  t.is((await echo.ended).toString(), 'over a unix socket');
  t.deepEqual(channel.ends().remoteAddress, undefined);
  server.close();
});

// Proves: a peer that half-closed and then reset makes our later shutdown fail
// with ENOTCONN; the channel still just closes, without an error, as net.Socket
// does (found in review: it tore the connection down as a failure).
test('a shutdown after the peer has reset closes the channel without an error', async (t) => {
  const server = createServer({ allowHalfOpen: true, pauseOnConnect: true });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  const accepted = new Promise<Channel>((resolve) => acceptChannels(server, resolve, () => {}));
  const peer = connect({ port: (server.address() as AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
  peer.on('error', () => {});
  await new Promise((resolve) => peer.once('connect', resolve));
  const channel = await accepted;
  const ended = new Promise<void>((resolve) => (channel.onEnd = resolve));
  channel.resume();
  peer.end();
  await ended;
  peer.resetAndDestroy();
  await new Promise((resolve) => setTimeout(resolve, 50));
  const closedWith = closed(channel);
  channel.end();
  t.is((await closedWith)?.message ?? null, null, `channel kind: ${channelKind()}`);
});

// Proves: with pending deprecations on by environment (NODE_PENDING_DEPRECATION=1),
// the handles are not reached (which would warn, or with --throw-deprecation
// crash the daemon once it listens): channels run on net.Socket instead.
test('NODE_PENDING_DEPRECATION=1: no deprecation warning and no crash; net.Socket channels', (t) => {
  const run = spawnSync(
    process.execPath,
    ['--throw-deprecation', '--input-type=module', '-e', `import { channelKind } from '${REPO_ROOT}dist/channel.js'; console.log(channelKind());`],
    { env: { ...process.env, NODE_PENDING_DEPRECATION: '1' }, encoding: 'utf8' },
  );
  t.is(run.status, 0, run.stderr);
  t.notRegex(run.stderr, /DEP0111/);
  t.is(run.stdout.trim(), 'net.Socket');
});
