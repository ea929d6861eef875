// Owns the dispose() tests of PacketSealer/PacketOpener with both backends: later use
// throws DisposedError, dispose is idempotent, the node:crypto backend zeroes every
// buffer holding key material, and other sealers with the same keys are unaffected.
import { randomBytes } from 'node:crypto';
import type { ExecutionContext } from 'ava';
import test from 'ava';
import { DisposedError, PACKET_LEN, PacketOpener, PacketSealer } from 'spiped-native/crypto/index';
import { heldKeyMaterial, nodeCryptoBackend } from 'spiped-native/crypto/node-backend';
import { backendTest } from './helpers/crypto-backends.js';

const E = randomBytes(32);
const H = randomBytes(32);

function disposedErr(t: ExecutionContext, fn: () => unknown, msg: string): void {
  const err = t.throws(fn, { instanceOf: DisposedError }, msg);
  t.is(err?.code, 'EDISPOSED', msg);
}

backendTest('after dispose() every seal/open throws DisposedError; dispose is idempotent', (t, backend) => {
  const s = new PacketSealer(E, H, 5n, { backend });
  const data = randomBytes(3000);
  const sealed = s.seal(data);
  t.is(s.nextPacket, 8n);
  s.dispose();
  s.dispose();
  t.is(s.nextPacket, 8n, 'nextPacket frozen at dispose');
  disposedErr(t, () => s.seal(data), 'seal');
  disposedErr(t, () => s.seal(Buffer.alloc(0)), 'seal of nothing');
  disposedErr(t, () => s.sealInto(data, Buffer.alloc(3 * PACKET_LEN)), 'sealInto');

  const o = new PacketOpener(E, H, 5n, { backend });
  t.deepEqual(o.open(sealed.subarray(0, PACKET_LEN)), data.subarray(0, 1024));
  o.dispose();
  o.dispose();
  t.is(o.nextPacket, 6n);
  t.false(o.failed);
  disposedErr(t, () => o.open(sealed.subarray(PACKET_LEN)), 'open');
  disposedErr(t, () => o.openInto(sealed.subarray(PACKET_LEN), Buffer.alloc(2048)), 'openInto');
  disposedErr(t, () => o.open(Buffer.alloc(0)), 'open of nothing');

  // Another opener with the same keys still works: dispose touched only its own keys.
  const o2 = new PacketOpener(E, H, 5n, { backend });
  t.deepEqual(o2.open(sealed), data);
  o2.dispose();
});

backendTest('a poisoned opener can still be disposed, and then reports EDISPOSED', (t, backend) => {
  const o = new PacketOpener(E, H, 0n, { backend });
  t.throws(() => o.open(Buffer.alloc(PACKET_LEN)), { code: 'EBADPACKET' });
  t.true(o.failed);
  o.dispose();
  disposedErr(t, () => o.open(Buffer.alloc(PACKET_LEN)), 'open after poison and dispose');
});

test('[node-crypto] dispose() zeroes every buffer holding key material', (t) => {
  for (const core of [nodeCryptoBackend.createSealer(E, H, 0n), nodeCryptoBackend.createOpener(E, H, 0n)]) {
    if ('seal' in core) core.seal(randomBytes(2000));
    const held = heldKeyMaterial(core);
    if (!held) {
      t.fail('no key material registered');
      return;
    }
    t.true(held.length >= 3);
    const nonZero = (b: Uint8Array | Int32Array): boolean => b.some((x) => x !== 0);
    t.true(held.some(nonZero), 'key material present before dispose');
    const macKey = held[0];
    t.deepEqual(macKey && Buffer.from(macKey.buffer, macKey.byteOffset, macKey.byteLength), H, 'the MAC key copy is registered');
    core.dispose();
    for (const [i, b] of held.entries()) t.false(nonZero(b), `buffer ${i} wiped`);
    t.throws(() => ('seal' in core ? core.seal(Buffer.from('x')) : core.open(Buffer.alloc(PACKET_LEN))), { instanceOf: DisposedError });
  }
});
