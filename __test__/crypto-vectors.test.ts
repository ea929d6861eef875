// Owns the byte-for-byte reproduction of the recorded spiped 1.6.2 -f session with
// both crypto backends: handshake-derived keys, opening every packet (whole, one by
// one, in random batches), and re-sealing every packet's plaintext to the same bytes.
import test from 'ava';
import { createHmac, randomInt } from 'node:crypto';
import { PACKET_LEN, PacketOpener, PacketSealer } from 'spiped-native/crypto/index';
import { backendTest } from './helpers/crypto-backends.js';
import { loadFastSession, referenceSeal, type FastSession } from './helpers/vectors.js';

const s: FastSession = loadFastSession();

const DIRECTIONS = [
  { dir: 'client->server', E: s.EC, H: s.HC, packets: s.packetsC2S, plaintext: s.plaintextC2S },
  { dir: 'server->client', E: s.ES, H: s.HS, packets: s.packetsS2C, plaintext: s.plaintextS2C },
] as const;

test('vector: fast-mode handshake is y=1 with HMAC(dhmac, y) both ways', (t) => {
  const one = Buffer.alloc(256);
  one[255] = 1;
  t.deepEqual(s.yhC.subarray(0, 256), one);
  t.deepEqual(s.yhS.subarray(0, 256), one);
  t.deepEqual(s.yhC.subarray(256), createHmac('sha256', s.dhmacC).update(one).digest());
  t.deepEqual(s.yhS.subarray(256), createHmac('sha256', s.dhmacS).update(one).digest());
  for (const d of DIRECTIONS) {
    t.true(d.packets.length > 0);
    t.is(d.packets.length % PACKET_LEN, 0, `${d.dir}: whole packets`);
  }
});

/** Opens a direction packet by packet with a fresh opener; returns each packet's payload. */
function chunks(backendOpts: ConstructorParameters<typeof PacketOpener>[3], d: (typeof DIRECTIONS)[number]): Buffer[] {
  const o = new PacketOpener(d.E, d.H, 0n, backendOpts);
  const out: Buffer[] = [];
  for (let p = 0; p < d.packets.length; p += PACKET_LEN) out.push(o.open(d.packets.subarray(p, p + PACKET_LEN)));
  return out;
}

for (const d of DIRECTIONS) {
  backendTest(`vector ${d.dir}: open all packets at once and one by one`, (t, backend) => {
    const whole = new PacketOpener(d.E, d.H, 0n, { backend });
    t.deepEqual(whole.open(d.packets), d.plaintext);
    t.is(whole.nextPacket, BigInt(d.packets.length / PACKET_LEN));
    const parts = chunks({ backend }, d);
    t.deepEqual(Buffer.concat(parts), d.plaintext);
    for (const c of parts) t.true(c.length >= 1 && c.length <= 1024);
  });

  backendTest(`vector ${d.dir}: re-sealing every packet's plaintext gives the recorded bytes`, (t, backend) => {
    const parts = chunks({ backend }, d);
    // One sealer fed the same chunks, as the reference daemon did.
    const sealer = new PacketSealer(d.E, d.H, 0n, { backend });
    t.deepEqual(Buffer.concat(parts.map((c) => sealer.seal(c))), d.packets);
    t.is(sealer.nextPacket, BigInt(parts.length));
    // A fresh sealer per packet, started at that packet's number.
    parts.forEach((c, i) => {
      const one = new PacketSealer(d.E, d.H, BigInt(i), { backend });
      t.deepEqual(one.seal(c), d.packets.subarray(i * PACKET_LEN, (i + 1) * PACKET_LEN), `packet ${i}`);
    });
    // sealInto at an odd offset.
    const into = new PacketSealer(d.E, d.H, 0n, { backend });
    const out = Buffer.alloc(d.packets.length + 3);
    let o = 3;
    for (const c of parts) o += into.sealInto(c, out, o);
    t.is(o, out.length);
    t.deepEqual(out.subarray(3), d.packets);
  });

  backendTest(`vector ${d.dir}: open in random batch splits (open and openInto)`, (t, backend) => {
    const count = d.packets.length / PACKET_LEN;
    for (let round = 0; round < 25; round++) {
      const o = new PacketOpener(d.E, d.H, 0n, { backend });
      const useInto = round % 2 === 1;
      const got: Buffer[] = [];
      for (let i = 0; i < count; ) {
        const k = randomInt(1, count - i + 1);
        const batch = d.packets.subarray(i * PACKET_LEN, (i + k) * PACKET_LEN);
        if (useInto) {
          const off = randomInt(0, 8);
          const out = Buffer.alloc(off + k * 1024);
          const n = o.openInto(batch, out, off);
          got.push(out.subarray(off, off + n));
        } else {
          got.push(o.open(batch));
        }
        i += k;
      }
      t.deepEqual(Buffer.concat(got), d.plaintext);
      t.is(o.nextPacket, BigInt(count));
    }
  });
}

test('vector: the naive reference encoder reproduces the session too', (t) => {
  for (const d of DIRECTIONS) {
    const o = new PacketOpener(d.E, d.H);
    let n = 0n;
    const parts: Buffer[] = [];
    for (let p = 0; p < d.packets.length; p += PACKET_LEN, n++) {
      const pt = o.open(d.packets.subarray(p, p + PACKET_LEN));
      parts.push(referenceSeal(d.E, d.H, n, pt));
    }
    t.deepEqual(Buffer.concat(parts), d.packets);
  }
});
