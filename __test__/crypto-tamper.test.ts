// Owns the "every kind of tampering is refused" tests for both backends: flipped bits
// everywhere in a packet, truncation, extra bytes, reordering, replay, skipping, wrong
// keys, authentic packets with length field 0 or > 1024, and the opener refusing
// everything for ever after the first failure.
import { randomBytes } from 'node:crypto';
import type { ExecutionContext } from 'ava';
import { BadPacketError, PACKET_LEN, PacketOpener, PacketSealer, type PacketBackend } from 'spiped-native/crypto/index';
import { backendTest } from './helpers/crypto-backends.js';
import { referencePacket } from './helpers/vectors.js';

const E = randomBytes(32);
const H = randomBytes(32);
const FIRST = 77n;
const DATA = randomBytes(3 * 1024 - 100); // three packets, the last one short
const SEALED = new PacketSealer(E, H, FIRST).seal(DATA);
const pkt = (i: number): Buffer => SEALED.subarray(i * PACKET_LEN, (i + 1) * PACKET_LEN);

function opener(backend: PacketBackend, first = FIRST): PacketOpener {
  return new PacketOpener(E, H, first, { backend });
}

/** Asserts fn throws the EBADPACKET error. */
function bad(t: ExecutionContext, fn: () => unknown, msg?: string): BadPacketError | undefined {
  const e = t.throws(fn, { instanceOf: BadPacketError }, msg);
  if (e) t.is(e.code, 'EBADPACKET');
  return e as BadPacketError | undefined;
}

/** Asserts the opener now refuses even authentic input, via open and openInto. */
function refusesForEver(t: ExecutionContext, o: PacketOpener): void {
  t.true(o.failed);
  const e1 = bad(t, () => o.open(pkt(0)));
  t.is(e1?.reason, 'poisoned');
  bad(t, () => o.openInto(pkt(0), Buffer.alloc(1024)));
  bad(t, () => o.open(SEALED));
  bad(t, () => o.open(Buffer.alloc(0)));
}

backendTest('sanity: the untampered stream opens', (t, backend) => {
  t.deepEqual(opener(backend).open(SEALED), DATA);
});

backendTest('a flipped bit at every byte position of a packet is refused', (t, backend) => {
  for (let pos = 0; pos < PACKET_LEN; pos++) {
    const bit = 1 << (pos % 8);
    const forged = Buffer.from(SEALED);
    forged[PACKET_LEN + pos] = (forged[PACKET_LEN + pos] as number) ^ bit; // in the middle packet
    const o = opener(backend);
    const out = Buffer.alloc(3 * 1024);
    const viaInto = pos % 2 === 1;
    const e = viaInto ? t.throws(() => o.openInto(forged, out)) : t.throws(() => o.open(forged));
    if ((e as { code?: string } | undefined)?.code !== 'EBADPACKET') {
      t.fail(`byte ${pos} bit ${bit}: not refused with EBADPACKET`);
      return;
    }
    if (!o.failed) t.fail(`byte ${pos}: opener not failed`);
    // Nothing of the forged packet may have reached out (only packet 0's payload may).
    if (viaInto && !out.subarray(1024).equals(Buffer.alloc(2 * 1024))) t.fail(`byte ${pos}: forged payload written`);
  }
  for (const bit of [0x01, 0x10, 0x80]) {
    for (const pos of [0, 1023, 1024, 1027, 1028, 1059]) {
      const forged = Buffer.from(pkt(0));
      forged[pos] = (forged[pos] as number) ^ bit;
      const o = opener(backend);
      bad(t, () => o.open(forged), `pos ${pos} bit ${bit}`);
      refusesForEver(t, o);
    }
  }
});

backendTest('truncation and extra bytes are refused', (t, backend) => {
  for (const len of [1, 32, 1028, PACKET_LEN - 1, PACKET_LEN + 1, 2 * PACKET_LEN - 1, SEALED.length - 1]) {
    const o = opener(backend);
    const e = bad(t, () => o.open(SEALED.subarray(0, len)), `length ${len}`);
    t.is(e?.reason, 'size');
    refusesForEver(t, o);
  }
  for (const extra of [1, 31, 32, PACKET_LEN - 1]) {
    const o = opener(backend);
    bad(t, () => o.open(Buffer.concat([SEALED, randomBytes(extra)])), `extra ${extra}`);
    refusesForEver(t, o);
  }
  // openInto refuses a partial packet too.
  const o = opener(backend);
  bad(t, () => o.openInto(SEALED.subarray(0, PACKET_LEN + 5), Buffer.alloc(4096)));
  refusesForEver(t, o);
  // A whole appended packet of garbage, or a packet with its MAC cut off and replaced.
  const o2 = opener(backend);
  bad(t, () => o2.open(Buffer.concat([SEALED, randomBytes(PACKET_LEN)])));
  const o3 = opener(backend);
  bad(t, () => o3.open(Buffer.concat([pkt(0).subarray(0, 1028), randomBytes(32)])));
});

backendTest('reordered, replayed, skipped and misnumbered packets are refused', (t, backend) => {
  const swapped = Buffer.concat([pkt(1), pkt(0), pkt(2)]);
  let o = opener(backend);
  bad(t, () => o.open(swapped), 'swap in one batch');
  refusesForEver(t, o);

  o = opener(backend);
  bad(t, () => o.open(pkt(1)), 'packet 1 first');
  refusesForEver(t, o);

  o = opener(backend);
  t.deepEqual(o.open(pkt(0)), DATA.subarray(0, 1024));
  bad(t, () => o.open(pkt(0)), 'replay of packet 0');
  refusesForEver(t, o);

  o = opener(backend);
  t.deepEqual(o.open(pkt(0)), DATA.subarray(0, 1024));
  bad(t, () => o.open(pkt(2)), 'packet 1 skipped');
  refusesForEver(t, o);

  o = opener(backend);
  bad(t, () => o.open(Buffer.concat([pkt(0), pkt(1), pkt(1)])), 'replay in a batch');

  o = opener(backend, FIRST + 1n);
  bad(t, () => o.open(pkt(0)), 'opener one ahead');
  o = opener(backend, FIRST - 1n);
  bad(t, () => o.open(pkt(0)), 'opener one behind');

  const wrongMac = new PacketOpener(E, randomBytes(32), FIRST, { backend });
  bad(t, () => wrongMac.open(pkt(0)), 'wrong MAC key');
  // Wrong encryption key with the right MAC key: MAC passes, length field is garbage.
  const wrongEnc = new PacketOpener(randomBytes(32), H, FIRST, { backend });
  bad(t, () => wrongEnc.open(SEALED), 'wrong encryption key');
});

backendTest('authentic packets with length field 0 or > 1024 are refused; 1 and 1024 accepted', (t, backend) => {
  const payload = randomBytes(1024);
  for (const lenField of [1, 1024, 17]) {
    const p = referencePacket(E, H, 5n, payload.subarray(0, lenField), lenField);
    t.deepEqual(new PacketOpener(E, H, 5n, { backend }).open(p), payload.subarray(0, lenField), `len ${lenField}`);
  }
  for (const lenField of [0, 1025, 1028, 2048, 0x10000, 0x7fffffff, 0xffffffff]) {
    const p = referencePacket(E, H, 5n, payload.subarray(0, Math.min(lenField, 1024)), lenField);
    const o = new PacketOpener(E, H, 5n, { backend });
    const e = bad(t, () => o.open(p), `length field ${lenField}`);
    t.is(e?.reason, 'packet');
    refusesForEver(t, o);
    // Also when the bad packet follows a good one in the same batch, via openInto.
    const good = referencePacket(E, H, 4n, payload.subarray(0, 10));
    const o2 = new PacketOpener(E, H, 4n, { backend });
    const out = Buffer.alloc(2048);
    bad(t, () => o2.openInto(Buffer.concat([good, p]), out, 0));
    t.deepEqual(out.subarray(1024), Buffer.alloc(1024), 'no byte of the bad packet written');
    refusesForEver(t, o2);
  }
});

backendTest('error messages are clear and identical across backends', (t, backend) => {
  const o = opener(backend);
  const e = bad(t, () => o.open(pkt(1)));
  t.is(e?.message, 'spiped: bad packet: MAC verification failed or invalid length field');
  const e2 = bad(t, () => o.open(pkt(0)));
  t.is(e2?.message, 'spiped: packet opener refuses all input after an earlier bad packet');
  const o3 = opener(backend);
  const e3 = bad(t, () => o3.open(Buffer.alloc(100)));
  t.regex(e3?.message ?? '', /not a whole number of 1060-byte packets \(100 bytes\)/);
});
