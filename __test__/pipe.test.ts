// The packet pipe's reassembly: encrypted bytes split at any boundary open to
// exactly the sealed plaintext, a partial packet is held, and a bad packet
// yields nothing of itself.

import test from 'ava';
import { randomBytes, randomInt } from 'node:crypto';
import { PacketAssembler, PacketOpener, PacketSealer, SpipedError, pipePackets } from 'spiped-native';
import { socketPair } from './helpers/processes.js';

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
  const piped = pipePackets(plain, encrypted, { sealer: new PacketSealer(enc, mac), opener: new PacketOpener(enc, mac) });
  await plainPeerEnded;
  t.pass('the plaintext side saw EOF');
  plainPeer.end();
  encryptedPeer.resume();
  await piped;
  t.true(plain.destroyed && encrypted.destroyed, 'both sockets closed once both directions ended');
});
