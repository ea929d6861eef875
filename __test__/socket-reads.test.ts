// How established connections read their sockets (src-ts/socket-reads.ts): on
// this Node both accepted and outgoing sockets read into the shared buffer, and
// in either mode bytes arrive whole and in order (those buffered before the
// switch first), several sockets share the buffer without mixing, pause() stops
// the callbacks, and EOF still ends the stream.

import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { READ_BUFFER_SIZE, readChunks, type ReadMode } from 'spiped-native/socket-reads';
import { socketPair } from './helpers/processes.js';

/** A connected pair whose client side has finished connecting: [client, accepted]. */
async function connectedPair(t: ExecutionContext): Promise<[Socket, Socket]> {
  const [client, accepted] = await socketPair();
  t.teardown(() => {
    client.destroy();
    accepted.destroy();
  });
  if (client.connecting) await new Promise((resolve) => client.once('connect', resolve));
  return [client, accepted];
}

/** readChunks() with SPIPED_NATIVE_USER_BUFFER set to `flag` for the call (it is read only then). */
function readChunksWith(flag: string | undefined, socket: Socket, onChunk: (chunk: Buffer) => void): ReadMode {
  const saved = process.env['SPIPED_NATIVE_USER_BUFFER'];
  if (flag === undefined) delete process.env['SPIPED_NATIVE_USER_BUFFER'];
  else process.env['SPIPED_NATIVE_USER_BUFFER'] = flag;
  try {
    return readChunks(socket, onChunk);
  } finally {
    if (saved === undefined) delete process.env['SPIPED_NATIVE_USER_BUFFER'];
    else process.env['SPIPED_NATIVE_USER_BUFFER'] = saved;
  }
}

/** Collects copies of what `socket` delivers through readChunks() until its 'end'. */
function collect(flag: string | undefined, socket: Socket): { mode: ReadMode; received: Promise<Buffer>; chunks: Buffer[] } {
  const chunks: Buffer[] = [];
  const mode = readChunksWith(flag, socket, (chunk) => chunks.push(Buffer.from(chunk)));
  const received = new Promise<Buffer>((resolve, reject) => {
    socket.once('end', () => resolve(Buffer.concat(chunks)));
    socket.once('error', reject);
  });
  return { mode, received, chunks };
}

const major = Number(process.versions.node.split('.')[0]);

for (const [flag, expected] of [
  [undefined, major === 20 ? 'user-buffer' : null],
  ['0', 'data-events'],
] as const) {
  const label = flag === undefined ? 'default' : `SPIPED_NATIVE_USER_BUFFER=${flag}`;

  test(`${label}: bytes buffered before the switch come first, then the rest, whole and in order, on accepted and outgoing sockets`, async (t) => {
    const [client, accepted] = await connectedPair(t);
    const [earlyToAccepted, earlyToClient] = [randomBytes(3000), randomBytes(5000)];
    // Bytes the handshake left queued: read the socket in paused mode until both early writes sit in its buffer.
    client.write(earlyToAccepted);
    accepted.write(earlyToClient);
    for (const [socket, wanted] of [
      [accepted, earlyToAccepted.length],
      [client, earlyToClient.length],
    ] as const) {
      while (socket.readableLength < wanted) {
        socket.read(0);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    }
    const atAccepted = collect(flag, accepted);
    const atClient = collect(flag, client);
    if (expected !== null) t.deepEqual([atAccepted.mode, atClient.mode], [expected, expected]);
    else t.log(`Node ${process.versions.node}: read mode ${atAccepted.mode}`);
    accepted.resume();
    client.resume();
    const [lateToAccepted, lateToClient] = [randomBytes(3 * READ_BUFFER_SIZE + 17), randomBytes(2 * READ_BUFFER_SIZE + 5)];
    client.end(lateToAccepted);
    accepted.end(lateToClient);
    t.true((await atAccepted.received).equals(Buffer.concat([earlyToAccepted, lateToAccepted])), 'client -> accepted');
    t.true((await atClient.received).equals(Buffer.concat([earlyToClient, lateToClient])), 'accepted -> client');
  });

  test(`${label}: several sockets reading at once never see each other's bytes`, async (t) => {
    const pairs = await Promise.all([0, 1, 2, 3].map(() => connectedPair(t)));
    const payloads = pairs.map(() => randomBytes(1 << 20));
    const slice = 1 << 16;
    const readers = pairs.map(([, accepted]) => collect(flag, accepted));
    for (const [, accepted] of pairs) accepted.resume();
    // Interleave the writers in small slices so reads of different sockets alternate.
    for (let offset = 0; offset < 1 << 20; offset += slice) {
      pairs.forEach(([client], i) => client.write(payloads[i]?.subarray(offset, offset + slice) ?? Buffer.alloc(0)));
      await new Promise((resolve) => setImmediate(resolve));
    }
    for (const [client] of pairs) client.end();
    const received = await Promise.all(readers.map((reader) => reader.received));
    received.forEach((bytes, i) => t.true(bytes.equals(payloads[i] ?? Buffer.alloc(0)), `socket ${i}`));
  });

  test(`${label}: pause() inside the callback stops further chunks until resume()`, async (t) => {
    const [client, accepted] = await connectedPair(t);
    let paused = false;
    let chunksWhilePaused = 0;
    const chunks: Buffer[] = [];
    readChunksWith(flag, accepted, (chunk) => {
      if (paused) chunksWhilePaused += 1;
      chunks.push(Buffer.from(chunk));
      if (chunks.length === 1) {
        paused = true;
        accepted.pause();
      }
    });
    const ended = new Promise((resolve) => accepted.once('end', resolve));
    accepted.resume();
    const payload = randomBytes(4 << 20);
    client.end(payload);
    await new Promise((resolve) => setTimeout(resolve, 300));
    t.is(chunks.length, 1, 'one chunk, then nothing while paused');
    t.is(chunksWhilePaused, 0);
    paused = false;
    accepted.resume();
    await ended;
    t.true(Buffer.concat(chunks).equals(payload));
  });
}
