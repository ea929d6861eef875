// Owns argument validation and counter-exhaustion tests for PacketSealer/PacketOpener
// with both backends: TypeError/RangeError exactly as documented, no state change on
// a refused call, and nothing crashing the process.
import { randomBytes } from 'node:crypto';
import type { ExecutionContext } from 'ava';
import { MAX_COUNTER, MAX_PACKET_NUMBER, PACKET_LEN, PacketOpener, PacketSealer } from 'spiped-native/crypto/index';
import { backendTest } from './helpers/crypto-backends.js';
import { referencePacket } from './helpers/vectors.js';

const E = randomBytes(32);
const H = randomBytes(32);

/** Calls fn with arguments TypeScript would reject. */
const loose = <T>(fn: T): ((...args: unknown[]) => unknown) => fn as unknown as (...args: unknown[]) => unknown;

const NOT_BYTES: unknown[] = [
  undefined, null, 'abc', 42, 1n, {}, [1, 2, 3], new ArrayBuffer(32), new DataView(new ArrayBuffer(32)),
  new Int8Array(32), new Uint16Array(16), new Uint8ClampedArray(32),
];

function typeErr(t: ExecutionContext, fn: () => unknown, msg: string): void {
  t.throws(fn, { instanceOf: TypeError }, msg);
}
function rangeErr(t: ExecutionContext, fn: () => unknown, msg: string): void {
  t.throws(fn, { instanceOf: RangeError }, msg);
}

backendTest('constructors validate keys and firstPacket', (t, backend) => {
  for (const Ctor of [PacketSealer, PacketOpener]) {
    const make = (...a: unknown[]): unknown => new (Ctor as unknown as new (...x: unknown[]) => unknown)(...a);
    for (const v of NOT_BYTES) {
      typeErr(t, () => make(v, H, 0n, { backend }), `encKey ${String(v)}`);
      typeErr(t, () => make(E, v, 0n, { backend }), `macKey ${String(v)}`);
    }
    for (const n of [0, 16, 31, 33, 64]) {
      typeErr(t, () => make(randomBytes(n), H, 0n, { backend }), `encKey of ${n} bytes`);
      typeErr(t, () => make(E, randomBytes(n), 0n, { backend }), `macKey of ${n} bytes`);
    }
    for (const v of [0, 1, -1, '0', 1.5, null, {}]) typeErr(t, () => make(E, H, v, { backend }), `firstPacket ${String(v)}`);
    for (const v of [-1n, -(2n ** 64n), MAX_COUNTER + 1n, 2n ** 100n]) rangeErr(t, () => make(E, H, v, { backend }), `firstPacket ${v}`);
    t.notThrows(() => make(E, H, undefined, { backend }));
    t.notThrows(() => make(E, H, MAX_COUNTER, { backend }));
    // A key given as a subarray view of a bigger buffer works and is copied.
    const big = randomBytes(100);
    t.notThrows(() => make(big.subarray(3, 35), big.subarray(50, 82), 0n, { backend }));
  }
  t.is(new PacketSealer(E, H, undefined, { backend }).nextPacket, 0n);
  t.is(new PacketOpener(E, H, 12345n, { backend }).nextPacket, 12345n);
});

backendTest('keys are copied: mutating them after construction changes nothing', (t, backend) => {
  const e = Buffer.from(E);
  const h = Buffer.from(H);
  const s = new PacketSealer(e, h, 0n, { backend });
  e.fill(0);
  h.fill(0);
  t.deepEqual(s.seal(Buffer.from('hi')), referencePacket(E, H, 0n, Buffer.from('hi')));
});

backendTest('seal/sealInto validate data, out and outOffset without changing state', (t, backend) => {
  const s = new PacketSealer(E, H, 0n, { backend });
  for (const v of NOT_BYTES) {
    typeErr(t, () => loose(s.seal.bind(s))(v), `seal(${String(v)})`);
    typeErr(t, () => loose(s.sealInto.bind(s))(v, Buffer.alloc(2000)), `sealInto data ${String(v)}`);
    typeErr(t, () => loose(s.sealInto.bind(s))(Buffer.alloc(5), v), `sealInto out ${String(v)}`);
  }
  const data = randomBytes(1025); // two packets
  rangeErr(t, () => s.sealInto(data, Buffer.alloc(2 * PACKET_LEN - 1)), 'out one byte short');
  rangeErr(t, () => s.sealInto(data, Buffer.alloc(2 * PACKET_LEN), 1), 'offset leaves it one byte short');
  rangeErr(t, () => s.sealInto(data, Buffer.alloc(PACKET_LEN)), 'out one packet');
  for (const off of [-1, 1.5, 3000, NaN, Infinity]) rangeErr(t, () => s.sealInto(data, Buffer.alloc(2 * PACKET_LEN), off), `offset ${off}`);
  for (const off of ['0', 0n, null]) typeErr(t, () => loose(s.sealInto.bind(s))(data, Buffer.alloc(2 * PACKET_LEN), off), `offset ${String(off)}`);
  t.is(s.nextPacket, 0n, 'no refused call moved the counter');
  t.is(s.sealInto(Buffer.alloc(0), Buffer.alloc(0), 0), 0, 'empty data needs no room');
  t.is(s.sealInto(Buffer.alloc(0), Buffer.alloc(4), 4), 0, 'offset == length is allowed');
  t.is(s.seal(new Uint8Array(0)).length, 0);
  const out = Buffer.alloc(2 * PACKET_LEN + 7);
  t.is(s.sealInto(data, out, 7), 2 * PACKET_LEN);
  t.is(s.nextPacket, 2n);
  t.deepEqual(new PacketOpener(E, H, 0n, { backend }).open(out.subarray(7)), data);
});

backendTest('open/openInto validate arguments; a refused argument does not poison the opener', (t, backend) => {
  const sealed = new PacketSealer(E, H, 0n, { backend }).seal(randomBytes(2048));
  const o = new PacketOpener(E, H, 0n, { backend });
  for (const v of NOT_BYTES) {
    typeErr(t, () => loose(o.open.bind(o))(v), `open(${String(v)})`);
    typeErr(t, () => loose(o.openInto.bind(o))(v, Buffer.alloc(4096)), `openInto packets ${String(v)}`);
    typeErr(t, () => loose(o.openInto.bind(o))(sealed, v), `openInto out ${String(v)}`);
  }
  rangeErr(t, () => o.openInto(sealed, Buffer.alloc(2047)), 'out one byte short of 2*1024');
  rangeErr(t, () => o.openInto(sealed, Buffer.alloc(2048), 1), 'offset leaves it short');
  for (const off of [-1, 0.5, 5000]) rangeErr(t, () => o.openInto(sealed, Buffer.alloc(4096), off), `offset ${off}`);
  typeErr(t, () => loose(o.openInto.bind(o))(sealed, Buffer.alloc(4096), '1'), 'offset string');
  t.false(o.failed);
  t.is(o.nextPacket, 0n);
  t.deepEqual(o.open(Buffer.alloc(0)), Buffer.alloc(0));
  t.is(o.openInto(Buffer.alloc(0), Buffer.alloc(0)), 0);
  const out = Buffer.alloc(2050);
  t.is(o.openInto(sealed, out, 2), 2048);
  t.is(o.nextPacket, 2n);
});

backendTest('the sealer counter refuses to pass 2^64-2 and changes nothing when it refuses', (t, backend) => {
  const last = new PacketSealer(E, H, MAX_PACKET_NUMBER, { backend });
  const p = last.seal(Buffer.from('x'));
  t.deepEqual(p, referencePacket(E, H, MAX_PACKET_NUMBER, Buffer.from('x')));
  t.is(last.nextPacket, MAX_COUNTER);
  rangeErr(t, () => last.seal(Buffer.from('y')), 'packet 2^64-1');
  rangeErr(t, () => last.sealInto(Buffer.from('y'), Buffer.alloc(PACKET_LEN)), 'sealInto packet 2^64-1');
  t.is(last.seal(Buffer.alloc(0)).length, 0, 'empty still fine');
  t.is(last.nextPacket, MAX_COUNTER);

  const near = new PacketSealer(E, H, MAX_COUNTER - 3n, { backend }); // room for exactly 3 packets
  rangeErr(t, () => near.seal(randomBytes(3 * 1024 + 1)), '4 packets');
  rangeErr(t, () => near.sealInto(randomBytes(3 * 1024 + 1), Buffer.alloc(4 * PACKET_LEN)), '4 packets into');
  t.is(near.nextPacket, MAX_COUNTER - 3n, 'unchanged after refusal');
  const data = randomBytes(3 * 1024);
  const sealed = near.seal(data);
  t.is(sealed.length, 3 * PACKET_LEN);
  t.is(near.nextPacket, MAX_COUNTER);
  t.deepEqual(new PacketOpener(E, H, MAX_COUNTER - 3n, { backend }).open(sealed), data);

  const at = new PacketSealer(E, H, MAX_COUNTER, { backend });
  rangeErr(t, () => at.seal(Buffer.from('z')), 'sealer created at 2^64-1');
});

backendTest('the opener counter refuses to pass 2^64-2 without failing for ever', (t, backend) => {
  const first = MAX_COUNTER - 2n; // packets 2^64-3 and 2^64-2 are allowed
  const ok = Buffer.concat([
    referencePacket(E, H, first, Buffer.from('a')),
    referencePacket(E, H, first + 1n, Buffer.from('b')),
  ]);
  const beyond = referencePacket(E, H, MAX_COUNTER, Buffer.from('c')); // packet number 2^64-1
  const o = new PacketOpener(E, H, first, { backend });
  rangeErr(t, () => o.open(Buffer.concat([ok, beyond])), '3 packets');
  rangeErr(t, () => o.openInto(Buffer.concat([ok, beyond]), Buffer.alloc(3 * 1024)), '3 packets into');
  t.false(o.failed);
  t.is(o.nextPacket, first);
  t.deepEqual(o.open(ok), Buffer.from('ab'));
  t.is(o.nextPacket, MAX_COUNTER);
  rangeErr(t, () => o.open(beyond), 'packet 2^64-1');
});

/** A Uint8Array of `n` random bytes over a SharedArrayBuffer. */
function sharedBytes(n: number, fill?: Uint8Array): Uint8Array {
  const v = new Uint8Array(new SharedArrayBuffer(n));
  v.set(fill ?? randomBytes(n));
  return v;
}

backendTest('SharedArrayBuffer-backed arguments are refused with a TypeError, and change nothing', (t, backend) => {
  for (const Ctor of [PacketSealer, PacketOpener]) {
    typeErr(t, () => new Ctor(sharedBytes(32), H, 0n, { backend }), 'shared encKey');
    typeErr(t, () => new Ctor(E, sharedBytes(32), 0n, { backend }), 'shared macKey');
  }
  const s = new PacketSealer(E, H, 0n, { backend });
  const data = randomBytes(100);
  typeErr(t, () => s.seal(sharedBytes(100)), 'seal shared data');
  typeErr(t, () => s.sealInto(sharedBytes(100), Buffer.alloc(PACKET_LEN)), 'sealInto shared data');
  typeErr(t, () => s.sealInto(data, sharedBytes(PACKET_LEN)), 'sealInto shared out');
  t.is(s.nextPacket, 0n);
  const sealed = s.seal(data);
  const o = new PacketOpener(E, H, 0n, { backend });
  typeErr(t, () => o.open(sharedBytes(PACKET_LEN, sealed)), 'open shared packets');
  typeErr(t, () => o.openInto(sharedBytes(PACKET_LEN, sealed), Buffer.alloc(1024)), 'openInto shared packets');
  typeErr(t, () => o.openInto(sealed, sharedBytes(1024)), 'openInto shared out');
  t.false(o.failed);
  t.is(o.nextPacket, 0n);
  t.deepEqual(o.open(sealed), data);
});
