// The packet pipe's reassembly: encrypted bytes split at any boundary open to
// exactly the sealed plaintext, a partial packet is held, and a bad packet
// yields nothing of itself; a finished pipe disposes its session's coders.

import test from 'ava';
import { randomBytes, randomInt } from 'node:crypto';
import type { Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { PacketAssembler, PacketOpener, PacketSealer, SpipedError, pipePackets } from 'spiped-native';
import { SlabPool } from 'spiped-native/pipe';
import { channelKind, SocketChannel } from 'spiped-native/channel';
import { channelPair, socketPair } from './helpers/processes.js';

const keys = (): [Buffer, Buffer] => [randomBytes(32), randomBytes(32)];

test('reassembles packets split at random boundaries, chunk by chunk', (t) => {
  const [enc, mac] = keys();
  const sealer = new PacketSealer(enc, mac);
  const assembler = new PacketAssembler(new PacketOpener(enc, mac));
  const chunks = [0, 1, 1023, 1024, 1025, 5000, 65536, 3].map((size) => randomBytes(size));
  const wire = Buffer.concat(chunks.map((chunk) => sealer.seal(chunk)));
  const out: Buffer[] = [];
  for (let offset = 0; offset < wire.length; ) {
    const size = Math.min(wire.length - offset, randomInt(1, 3000));
    out.push(assembler.push(wire.subarray(offset, offset + size)));
    offset += size;
  }
  t.false(assembler.hasPartialPacket);
  t.true(Buffer.concat(out).equals(Buffer.concat(chunks)));
});

test('holds a partial packet until the rest arrives', (t) => {
  const [enc, mac] = keys();
  const data = randomBytes(700);
  const wire = new PacketSealer(enc, mac).seal(data);
  const assembler = new PacketAssembler(new PacketOpener(enc, mac));
  t.is(assembler.push(wire.subarray(0, 1059)).length, 0);
  t.true(assembler.hasPartialPacket);
  t.true(assembler.push(wire.subarray(1059)).equals(data));
  t.false(assembler.hasPartialPacket);
});

test('a damaged packet in a batch throws EBADPACKET and yields nothing, then nothing ever again', (t) => {
  const [enc, mac] = keys();
  const sealer = new PacketSealer(enc, mac);
  const wire = Buffer.concat([sealer.seal(randomBytes(4096)), sealer.seal(randomBytes(10))]);
  wire[2 * 1060 + 17]! ^= 0x40;
  const assembler = new PacketAssembler(new PacketOpener(enc, mac));
  const error = t.throws(() => assembler.push(wire));
  t.true(error instanceof SpipedError);
  t.is((error as SpipedError).code, 'EBADPACKET');
  t.throws(() => assembler.push(new PacketSealer(enc, mac, 5n).seal(Buffer.from('x'))));
});


test('an EOF that arrived before the pipe was wired up still reaches the other side', async (t) => {
  const [enc, mac] = keys();
  const [encryptedPeer, encrypted] = await socketPair();
  const [plain, plainPeer] = await socketPair();
  // The encrypted peer half-closes at once; 'end' is emitted before pipePackets listens (as during a slow -d connect).
  encryptedPeer.end();
  await new Promise<void>((resolve) => {
    encrypted.once('end', () => resolve());
    encrypted.resume();
  });
  encrypted.pause();
  const plainPeerEnded = new Promise<void>((resolve) => plainPeer.once('end', () => resolve()).resume());
  const coders = { sealer: new PacketSealer(enc, mac), opener: new PacketOpener(enc, mac) };
  const piped = pipePackets(plain, encrypted, coders);
  await plainPeerEnded;
  t.pass('the plaintext side saw EOF');
  plainPeer.end();
  encryptedPeer.resume();
  await piped;
  t.true(plain.destroyed && encrypted.destroyed, 'both sockets closed once both directions ended');
  // The session's keys were wiped and freed with the connection, not left to the garbage collector.
  t.is(t.throws(() => coders.sealer.seal(Buffer.from('x')))?.name, 'DisposedError');
  t.is(t.throws(() => coders.opener.open(Buffer.alloc(1060)))?.name, 'DisposedError');
});

test('slabs: the smaller size that fits; only buffers it lent come back, each once', (t) => {
  const pool = new SlabPool();
  t.is(pool.take(5 * 1060).length, 64 * 1060, 'a medium output takes a 64-packet slab');
  t.is(pool.take(65 * 1060).length, 256 * 1060, 'a larger one a 256-packet slab');
  t.is(pool.take(100).length, 4 * 1060, 'a small one takes the small buffer');

  // A slab given back is reused; given back twice, it is still lent out only once.
  const slab = pool.take(70_000);
  pool.give(slab.subarray(0, 70_000));
  t.not(pool.take(70_000), slab, 'a view is not the slab: ignored');
  pool.give(slab);
  pool.give(slab);
  t.is(pool.take(70_000), slab, 'the slab was reused');
  t.not(pool.take(70_000), slab, 'but not handed out twice');

  // The small buffer likewise.
  const small = pool.take(10);
  pool.give(small);
  pool.give(small);
  t.is(pool.take(10), small, 'the small buffer was reused');
  t.not(pool.take(10), small, 'but not handed out twice');

  // Buffers it did not lend (such as Node's shared pool, however large) never enter it.
  const savedPoolSize = Buffer.poolSize;
  Buffer.poolSize = 1 << 20;
  try {
    // The new size applies once the current pool is used up.
    let pooled = Buffer.allocUnsafe(3000);
    for (let i = 0; i < 1000 && pooled.buffer.byteLength !== Buffer.poolSize; i++) pooled = Buffer.allocUnsafe(3000); // Node 24.22 starts with a 64 KiB pool
    t.true(pooled.buffer.byteLength >= 256 * 1060, 'the buffer lives in a large shared pool');
    pool.give(pooled);
    const fresh = pool.take(200_000);
    t.not(fresh.buffer, pooled.buffer, 'a slab never comes from Node\'s pool');
    t.not(pool.take(10).buffer, pooled.buffer);
  } finally {
    Buffer.poolSize = savedPoolSize;
  }
});

test('slabs: a small buffer comes back after a write straight to the kernel; a queued write keeps its bytes', async (t) => {
  const pool = new SlabPool();
  t.timeout(20_000);
  const [writer, reader] = await channelPair(); // the reader does not read until resumed
  const received: Buffer[] = [];
  reader.onData = (chunk) => received.push(Buffer.from(chunk));
  const ended = new Promise<void>((resolve) => (reader.onEnd = resolve));

  const first = pool.take(10).fill(0x61);
  pool.write(writer, first, first.subarray(0, 10));
  const second = pool.take(10);
  if (channelKind() === 'handles') t.is(second, first, 'the write went straight to the kernel, so the small buffer was free again at once');
  pool.give(second);

  // Fill the kernel buffers (the reader is paused) until a write has to queue.
  const filler = Buffer.alloc(64 * 1024, 0x2e);
  let fillerBytes = 0;
  let queuedFiller = false;
  while (!queuedFiller) {
    let written = false;
    writer.write(filler, () => (written = true));
    fillerBytes += filler.length;
    queuedFiller = !written;
  }
  const queued = pool.take(10).fill(0x62);
  pool.write(writer, queued, queued.subarray(0, 10));
  const next = pool.take(10);
  t.not(next, queued, 'a queued write keeps its buffer');
  next.fill(0x63); // must not touch the queued bytes
  pool.write(writer, next, next.subarray(0, 10));

  writer.end();
  reader.resume();
  await ended;
  const all = Buffer.concat(received);
  t.is(all.length, 10 + fillerBytes + 20);
  t.is(all.subarray(0, 10).toString(), 'a'.repeat(10));
  t.is(all.subarray(10 + fillerBytes).toString(), 'b'.repeat(10) + 'c'.repeat(10));
  reader.destroy();
  writer.destroy();
});

test('slabs: buffers written to anything but a plain net.Socket are never reused', async (t) => {
  const pool = new SlabPool();
  // A PassThrough completes each write at once yet keeps the very bytes it was given.
  const stream = new PassThrough();
  const target = new SocketChannel(stream as unknown as Socket);
  const small = pool.take(10).fill(0x61);
  pool.write(target, small, small.subarray(0, 10));
  t.is(stream.writableLength, 0, 'the write completed');
  const nextSmall = pool.take(10);
  t.not(nextSmall, small, 'yet the small buffer was not taken back');
  nextSmall.fill(0x62);
  // A medium output (under the PassThrough's high-water mark, so its write callback runs).
  const slab = pool.take(5 * 1060).fill(0x63);
  pool.write(target, slab, slab.subarray(0, 5 * 1060));
  await new Promise((resolve) => setImmediate(resolve)); // write callbacks have run
  const nextSlab = pool.take(5 * 1060);
  t.not(nextSlab, slab, 'nor the slab');
  nextSlab.fill(0x64);
  t.is(Buffer.concat([stream.read(10) as Buffer, stream.read(5 * 1060) as Buffer]).toString('latin1'), 'a'.repeat(10) + 'c'.repeat(5 * 1060));
});
