// Owns the tests of the native addon's own surface, called directly (not through
// PacketSealer/PacketOpener): disposed handles throw EDISPOSED and never crash,
// SharedArrayBuffer-backed views and wrong handles are refused by the binding
// itself, and version() is this package's version.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { packageVersion, type NativeHandle } from 'spiped-native/crypto/native';
import { native } from './helpers/crypto-backends.js';

const E = randomBytes(32);
const H = randomBytes(32);
const allowNoNative = process.env['SPIPED_TEST_ALLOW_NO_NATIVE'] === '1';
const addonTest = native.addon || !allowNoNative ? test : test.skip;
/** Calls fn with arguments TypeScript would reject. */
const loose = <T>(fn: T): ((...args: unknown[]) => unknown) => fn as unknown as (...args: unknown[]) => unknown;

addonTest('version() equals package.json version', (t) => {
  if (!native.addon) return t.fail(`native addon unavailable: ${native.error}`);
  t.is(native.addon.version(), packageVersion());
});

addonTest('a disposed handle throws EDISPOSED on every use; dispose is idempotent', (t) => {
  const a = native.addon;
  if (!a) return t.fail(`native addon unavailable: ${native.error}`);
  const s = a.createSealer(E, H, 0n);
  const o = a.createOpener(E, H, 0n);
  const sealed = a.seal(s, Buffer.from('hello'));
  for (const h of [s, o]) {
    a.dispose(h);
    a.dispose(h);
    t.throws(() => a.nextPacket(h), { code: 'EDISPOSED' });
  }
  t.throws(() => a.seal(s, Buffer.from('x')), { code: 'EDISPOSED' });
  t.throws(() => a.sealInto(s, Buffer.from('x'), Buffer.alloc(1060), 0), { code: 'EDISPOSED' });
  t.throws(() => a.open(o, sealed), { code: 'EDISPOSED' });
  t.throws(() => a.openInto(o, sealed, Buffer.alloc(1024), 0), { code: 'EDISPOSED' });
  // Many short-lived handles disposed early and then collected: no double free.
  for (let i = 0; i < 2000; i++) a.dispose(a.createOpener(E, H, BigInt(i)));
  t.pass();
});

addonTest('the binding refuses wrong handles and SharedArrayBuffer-backed views by itself', (t) => {
  const a = native.addon;
  if (!a) return t.fail(`native addon unavailable: ${native.error}`);
  const s = a.createSealer(E, H, 0n);
  const o = a.createOpener(E, H, 0n);
  const shared = new Uint8Array(new SharedArrayBuffer(2048));
  for (const bad of [{}, null, undefined, 1, Buffer.alloc(8), o] as unknown[]) {
    t.throws(() => loose(a.seal)(bad, Buffer.from('x')), { instanceOf: TypeError });
  }
  t.throws(() => loose(a.open)(s, Buffer.alloc(1060)), { instanceOf: TypeError }, 'a sealer is not an opener');
  t.throws(() => loose(a.dispose)({}), { instanceOf: TypeError });
  t.throws(() => a.createSealer(new Uint8Array(new SharedArrayBuffer(32)), H, 0n), { instanceOf: TypeError });
  t.throws(() => a.seal(s, shared), { instanceOf: TypeError, message: /SharedArrayBuffer/ });
  t.throws(() => a.sealInto(s, Buffer.from('x'), shared, 0), { instanceOf: TypeError, message: /SharedArrayBuffer/ });
  t.throws(() => a.open(o, shared.subarray(0, 1060)), { instanceOf: TypeError, message: /SharedArrayBuffer/ });
  t.throws(() => a.openInto(o, Buffer.alloc(1060), shared, 0), { instanceOf: TypeError, message: /SharedArrayBuffer/ });
  t.is(a.nextPacket(s), 0n);
  t.is(a.nextPacket(o), 0n);
  const h: NativeHandle = s;
  a.dispose(h);
});
