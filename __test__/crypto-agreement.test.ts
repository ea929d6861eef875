// Owns cross-checking the backends: native and node:crypto must produce identical
// packets for random keys, first counters (incl. near 2^64-2) and lengths 0..70000
// (dense around multiples of 1024), open each other's output, and match the naive
// reference encoder; and the handshake's PBKDF2 and HMAC equal OpenSSL's.
import test from 'ava';
import { createHmac, pbkdf2Sync, randomBytes, randomInt } from 'node:crypto';
import { MAX_COUNTER, PACKET_LEN, PacketOpener, PacketSealer, hmacSha256, pbkdf2Sha256, type PacketBackend } from 'spiped-native/crypto/index';
import { nodeCryptoBackend } from 'spiped-native/crypto/node-backend';
import { backendTest, native } from './helpers/crypto-backends.js';
import { referenceSeal } from './helpers/vectors.js';

/** Lengths 0..70000: every multiple of 1024 up to 68*1024 with +-1,2 around it, plus random ones. */
function lengths(): number[] {
  const set = new Set<number>([0, 1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 1000, 69999, 70000]);
  for (let m = 1; m <= 68; m++) for (const d of [-2, -1, 0, 1, 2]) set.add(m * 1024 + d);
  for (let i = 0; i < 40; i++) set.add(randomInt(0, 70001));
  return [...set].filter((n) => n >= 0 && n <= 70000).sort((a, b) => a - b);
}

/** Counters to start from, each with room for packetsNeeded packets. */
function counters(packetsNeeded: number): bigint[] {
  const top = MAX_COUNTER - BigInt(packetsNeeded); // last packet number used = 2^64-2
  return [0n, 1n, 0xffff_fff0n, BigInt(randomInt(0, 2 ** 47)) * 131071n, top];
}

/** Bytes of `len` starting at an odd byteOffset, to exercise unaligned input. */
function unalignedRandom(len: number): Uint8Array {
  const b = randomBytes(len + 1);
  return new Uint8Array(b.buffer, b.byteOffset + 1, len);
}

backendTest('matches the naive reference encoder for many lengths and counters', (t, backend) => {
  const E = randomBytes(32);
  const H = randomBytes(32);
  for (const len of lengths()) {
    const need = Math.ceil(len / 1024);
    for (const first of counters(need)) {
      const data = unalignedRandom(len);
      const sealed = new PacketSealer(E, H, first, { backend }).seal(data);
      if (!sealed.equals(referenceSeal(E, H, first, data))) {
        t.fail(`len ${len} first ${first}: differs from the reference`);
        return;
      }
      const opened = new PacketOpener(E, H, first, { backend }).open(sealed);
      if (!opened.equals(data)) {
        t.fail(`len ${len} first ${first}: round trip differs`);
        return;
      }
    }
  }
  t.pass();
});

backendTest('a long stream of random chunks: seal/sealInto/open/openInto agree and counters advance', (t, backend) => {
  const E = randomBytes(32);
  const H = randomBytes(32);
  const first = BigInt(randomInt(0, 2 ** 40));
  const a = new PacketSealer(E, H, first, { backend });
  const b = new PacketSealer(E, H, first, { backend });
  const o = new PacketOpener(E, H, first, { backend });
  let packets = 0n;
  for (let i = 0; i < 300; i++) {
    const len = i % 3 === 0 ? randomInt(1, 70001) : randomInt(0, 3000);
    const data = unalignedRandom(len);
    const sealed = a.seal(data);
    const off = randomInt(0, 9);
    const out = new Uint8Array(off + sealed.length + 5);
    const wrote = b.sealInto(data, out, off);
    const pt = new Uint8Array(off + Math.ceil(len / 1024) * 1024);
    const opened = i % 2 === 0 ? Buffer.from(pt.subarray(off, off + o.openInto(sealed, pt, off))) : o.open(sealed);
    packets += BigInt(sealed.length / PACKET_LEN);
    const problems = [
      wrote !== sealed.length && 'sealInto length',
      !Buffer.from(out.subarray(off, off + sealed.length)).equals(sealed) && 'sealInto bytes',
      !opened.equals(data) && 'round trip',
      a.nextPacket !== first + packets && 'sealer counter',
      b.nextPacket !== first + packets && 'sealInto counter',
      o.nextPacket !== first + packets && 'opener counter',
    ].filter(Boolean);
    if (problems.length > 0) {
      t.fail(`chunk ${i} (len ${len}): ${problems.join(', ')}`);
      return;
    }
  }
  t.pass();
});

function requireNative(): PacketBackend | undefined {
  return native.backend;
}

const nativeTest = native.backend || process.env['SPIPED_TEST_ALLOW_NO_NATIVE'] !== '1' ? test : test.skip;

nativeTest('native and node:crypto produce identical packets and open each other', (t) => {
  const nb = requireNative();
  if (!nb) {
    t.fail(`native addon unavailable: ${native.error}`);
    return;
  }
  for (let round = 0; round < 2; round++) {
    const E = randomBytes(32);
    const H = randomBytes(32);
    for (const len of lengths()) {
      const need = Math.ceil(len / 1024);
      for (const first of counters(need)) {
        const data = unalignedRandom(len);
        const x = new PacketSealer(E, H, first, { backend: nb }).seal(data);
        const y = new PacketSealer(E, H, first, { backend: nodeCryptoBackend }).seal(data);
        if (!x.equals(y)) {
          t.fail(`len ${len} first ${first}: native and node:crypto differ`);
          return;
        }
        const fromNative = new PacketOpener(E, H, first, { backend: nodeCryptoBackend }).open(x);
        const fromNode = new PacketOpener(E, H, first, { backend: nb }).open(y);
        if (!fromNative.equals(data) || !fromNode.equals(data)) {
          t.fail(`len ${len} first ${first}: cross-open failed`);
          return;
        }
      }
    }
  }
  t.pass();
});

nativeTest('native and node:crypto agree across a stream that ends exactly at packet 2^64-2', (t) => {
  const nb = requireNative();
  if (!nb) {
    t.fail(`native addon unavailable: ${native.error}`);
    return;
  }
  const E = randomBytes(32);
  const H = randomBytes(32);
  const first = MAX_COUNTER - 200n;
  const sealers = [new PacketSealer(E, H, first, { backend: nb }), new PacketSealer(E, H, first, { backend: nodeCryptoBackend })];
  let left = 200;
  while (left > 0) {
    const k = Math.min(left, randomInt(1, 20));
    const data = randomBytes((k - 1) * 1024 + randomInt(1, 1025));
    const [x, y] = sealers.map((s) => s.seal(data));
    t.deepEqual(x, y);
    left -= k;
  }
  for (const s of sealers) {
    t.is(s.nextPacket, MAX_COUNTER);
    t.throws(() => s.seal(Buffer.from([1])), { instanceOf: RangeError });
    t.is(s.seal(Buffer.alloc(0)).length, 0);
  }
});

// Proves: the handshake's PBKDF2 (one iteration) and HMAC-SHA256 on each backend equal
// OpenSSL's (node:crypto's own pbkdf2Sync and createHmac) for random keys, salts up to
// 400 bytes and lengths 1 to 300, the handshake's 64 and 128 among them; bad arguments
// are refused alike.
backendTest('pbkdf2Sha256 and hmacSha256 equal OpenSSL for random inputs; bad arguments refused', (t, backend) => {
  for (let i = 0; i < 300; i++) {
    const key = randomBytes(randomInt(0, 100));
    const salt = unalignedRandom(randomInt(0, 401));
    const length = i % 3 === 0 ? 64 : i % 3 === 1 ? 128 : randomInt(1, 301);
    const derived = pbkdf2Sha256(key, salt, length, { backend });
    if (!derived.equals(pbkdf2Sync(key, salt, 1, length, 'sha256'))) return t.fail(`pbkdf2 differs: key ${key.length}, salt ${salt.length}, length ${length}`);
    const data = unalignedRandom(randomInt(0, 2000));
    if (!hmacSha256(key, data, { backend }).equals(createHmac('sha256', key).update(data).digest())) return t.fail(`hmac differs: key ${key.length}, data ${data.length}`);
  }
  t.throws(() => pbkdf2Sha256(randomBytes(32), randomBytes(64), 0, { backend }), { instanceOf: RangeError });
  t.throws(() => pbkdf2Sha256(randomBytes(32), randomBytes(64), 1025, { backend }), { instanceOf: RangeError });
  t.throws(() => pbkdf2Sha256('key' as unknown as Uint8Array, randomBytes(64), 64, { backend }), { instanceOf: TypeError });
  t.throws(() => hmacSha256(randomBytes(32), 'data' as unknown as Uint8Array, { backend }), { instanceOf: TypeError });
  t.pass();
});
