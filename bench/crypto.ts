// Owns the packet-crypto benchmark (`node build/bench/crypto.js [--json] [--quick]
// [--no-portable] [--ab <old package dir>]`): seal/open MB/s of plaintext for the native
// addon on both of its cores (this process's kernels, and the portable core measured in
// a child with SPIPED_NATIVE_KERNELS=portable), the node:crypto backend and a naive
// per-packet node:crypto implementation, at 64 KiB and 1 KiB chunks, against an
// "OpenSSL bound" measured in the same run from node:crypto's bulk AES-256-CTR and
// SHA-256 speed on large buffers (the primitives' cost for one packet). With --ab, it
// instead loads an older build's dist/ (and its addon) beside this one and measures
// sealInto/openInto of both, interleaved in one process, round by round.
import { spawnSync } from 'node:child_process';
import { createCipheriv, createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { PACKET_LEN, PacketOpener, PacketSealer, cryptoBackend, type PacketBackend } from 'spiped-native/crypto/index';
import { loadNativeAddon, nativeBackendFrom } from 'spiped-native/crypto/native';
import { nodeCryptoBackend } from 'spiped-native/crypto/node-backend';

const argv = process.argv.slice(2);
const args = new Set(argv);
const JSON_OUT = args.has('--json');
const QUICK = args.has('--quick');
/** Child mode: measure only the native rows and print them as JSON. */
const NATIVE_ROWS_ONLY = args.has('--native-rows-json');
const AB_DIR = argv.includes('--ab') ? argv[argv.indexOf('--ab') + 1] : undefined;
/** Rounds of the A/B comparison (each measures old and new, order alternating). */
const AB_ROUNDS = QUICK ? 5 : 7;
/** Time per measurement and repetitions (best of N). */
const MEASURE_MS = QUICK ? 150 : 400;
const REPS = QUICK ? 1 : 3;
/** Bytes sealed ahead of time for the open measurements (a ring, re-opened from packet 0). */
const RING_BYTES = 16 << 20;
const CHUNKS = [65536, 1024] as const;
/** update() sizes for the OpenSSL bulk measurements. */
const BULK_SIZES = [16 << 10, 64 << 10, 256 << 10] as const;

const E = randomBytes(32);
const H = randomBytes(32);

function log(s: string): void {
  if (!JSON_OUT) process.stdout.write(s + '\n');
}

/** Calls fn(i) for ~MEASURE_MS, REPS times; returns the best rate in MB/s (1e6 bytes/s) of `bytesPerCall`. */
function measure(bytesPerCall: number, fn: (i: number) => void): number {
  let best = 0;
  for (let i = 0; i < 50; i++) fn(i); // warm-up
  for (let r = 0; r < REPS; r++) {
    let calls = 0;
    const start = process.hrtime.bigint();
    const end = start + BigInt(MEASURE_MS * 1e6);
    let now = start;
    while (now < end) {
      for (let j = 0; j < 8; j++) fn(calls++);
      now = process.hrtime.bigint();
    }
    const mbps = (calls * bytesPerCall) / (Number(now - start) / 1e9) / 1e6;
    best = Math.max(best, mbps);
  }
  return best;
}

// ---- the naive approach: a fresh AES-256-CTR cipher and HMAC object per packet ----------

function plainSealInto(first: bigint, data: Uint8Array, out: Buffer): number {
  const padded = Buffer.alloc(1028);
  const iv = Buffer.alloc(16);
  let o = 0;
  for (let off = 0, n = first; off < data.length; off += 1024, n++) {
    const len = Math.min(1024, data.length - off);
    padded.fill(0);
    padded.set(data.subarray(off, off + len));
    padded.writeUInt32BE(len, 1024);
    iv.writeBigUInt64BE(n, 0);
    const enc = createCipheriv('aes-256-ctr', E, iv).update(padded);
    enc.copy(out, o);
    createHmac('sha256', H).update(enc).update(iv.subarray(0, 8)).digest().copy(out, o + 1028);
    o += PACKET_LEN;
  }
  return o;
}

function plainOpenInto(first: bigint, packets: Buffer, out: Buffer): number {
  const iv = Buffer.alloc(16);
  let o = 0;
  for (let p = 0, n = first; p < packets.length; p += PACKET_LEN, n++) {
    iv.writeBigUInt64BE(n, 0);
    const enc = packets.subarray(p, p + 1028);
    const mac = createHmac('sha256', H).update(enc).update(iv.subarray(0, 8)).digest();
    if (!timingSafeEqual(mac, packets.subarray(p + 1028, p + PACKET_LEN))) throw new Error('bad MAC');
    const dec = createCipheriv('aes-256-ctr', E, iv).update(enc);
    const len = dec.readUInt32BE(1024);
    if (len === 0 || len > 1024) throw new Error('bad length');
    dec.copy(out, o, 0, len);
    o += len;
  }
  return o;
}

// ---- OpenSSL bulk speed of the primitives -------------------------------------------------

function opensslBound(): { aesCtrMBps: number; sha256MBps: number; boundMBps: number } {
  // Best over update sizes: big enough to amortise call overhead, small enough that
  // allocating each update()'s output does not dominate.
  let aesCtrMBps = 0;
  let sha256MBps = 0;
  for (const size of BULK_SIZES) {
    const buf = randomBytes(size);
    const ctr = createCipheriv('aes-256-ctr', E, Buffer.alloc(16));
    aesCtrMBps = Math.max(aesCtrMBps, measure(buf.length, () => void ctr.update(buf)));
    const sha = createHash('sha256');
    sha256MBps = Math.max(sha256MBps, measure(buf.length, () => void sha.update(buf)));
  }
  // Per packet: AES-CTR over 1028 bytes; SHA-256 compresses 17 inner blocks (1036 bytes
  // after the precomputed ipad state) + 1 outer block = 1152 bytes. Payload is 1024 bytes.
  const secondsPerPacket = 1028 / (aesCtrMBps * 1e6) + (18 * 64) / (sha256MBps * 1e6);
  return { aesCtrMBps, sha256MBps, boundMBps: 1024 / secondsPerPacket / 1e6 };
}

// ---- measurements -------------------------------------------------------------------------

interface Row {
  impl: string;
  chunk: number;
  sealMBps: number;
  openMBps: number;
}

/** Seals a ring of chunks from packet 0 (for the open measurements). */
function ring(chunk: number, backend: PacketBackend): Buffer[] {
  const s = new PacketSealer(E, H, 0n, { backend });
  const data = randomBytes(chunk);
  const out: Buffer[] = [];
  for (let i = 0; i < Math.max(1, RING_BYTES / chunk); i++) out.push(s.seal(data));
  return out;
}

function benchBackend(impl: string, backend: PacketBackend, chunk: number, sealed: Buffer[], into: boolean): Row {
  const data = randomBytes(chunk);
  const sealOut = Buffer.alloc(Math.ceil(chunk / 1024) * PACKET_LEN);
  const openOut = Buffer.alloc(Math.ceil(chunk / 1024) * 1024);
  let s = new PacketSealer(E, H, 0n, { backend });
  const sealMBps = measure(chunk, (i) => {
    if (i === 0) s = new PacketSealer(E, H, 0n, { backend });
    if (into) s.sealInto(data, sealOut, 0);
    else s.seal(data);
  });
  let o = new PacketOpener(E, H, 0n, { backend });
  let k = 0;
  const openMBps = measure(chunk, () => {
    if (k === sealed.length) {
      k = 0;
      o = new PacketOpener(E, H, 0n, { backend });
    }
    const p = sealed[k++] as Buffer;
    if (into) o.openInto(p, openOut, 0);
    else o.open(p);
  });
  return { impl, chunk, sealMBps, openMBps };
}

function benchPlain(chunk: number, sealed: Buffer[]): Row {
  const data = randomBytes(chunk);
  const perChunk = Math.ceil(chunk / 1024);
  const sealOut = Buffer.alloc(perChunk * PACKET_LEN);
  const openOut = Buffer.alloc(perChunk * 1024);
  const sealMBps = measure(chunk, (i) => void plainSealInto(BigInt(i * perChunk), data, sealOut));
  let k = 0;
  const openMBps = measure(chunk, () => {
    if (k === sealed.length) k = 0;
    const p = sealed[k] as Buffer;
    plainOpenInto(BigInt(k * perChunk), p, openOut);
    k++;
  });
  return { impl: 'plain per-packet node:crypto', chunk, sealMBps, openMBps };
}

/** The native backend of this process, and a note on where it came from. */
function nativeOfThisProcess(): { backend?: PacketBackend; note: string; kernels: string } {
  try {
    const { addon, from } = loadNativeAddon();
    const cpu = addon.cpuFeatures();
    const kernels = addon.kernels();
    return {
      backend: nativeBackendFrom(addon),
      kernels,
      note: `${from} (kernels=${kernels} aesni=${cpu.aesni} shani=${cpu.shani} vaes=${cpu.vaes} avx2=${cpu.avx2})`,
    };
  } catch (e) {
    return { note: `unavailable: ${e instanceof Error ? e.message : String(e)}`, kernels: 'none' };
  }
}

/** Native sealInto/openInto and seal/open rows at every chunk size, labelled with `kernels`. */
function nativeRows(backend: PacketBackend, kernels: string): Row[] {
  const rows: Row[] = [];
  for (const chunk of CHUNKS) {
    const sealed = ring(chunk, backend);
    rows.push(benchBackend(`native ${kernels} sealInto/openInto`, backend, chunk, sealed, true));
    rows.push(benchBackend(`native ${kernels} seal/open`, backend, chunk, sealed, false));
  }
  return rows;
}

/** The portable core's rows, measured in a child process (the kernels are chosen once per process). */
function portableRows(): Row[] | string {
  const flags = ['--native-rows-json', ...(QUICK ? ['--quick'] : [])];
  const r = spawnSync(process.execPath, [process.argv[1] as string, ...flags], {
    env: { ...process.env, SPIPED_NATIVE_KERNELS: 'portable' },
    encoding: 'utf8',
  });
  if (r.status !== 0) return `portable child failed: ${r.stderr.trim()}`;
  return JSON.parse(r.stdout) as Row[];
}

function main(): void {
  const native = nativeOfThisProcess();
  if (NATIVE_ROWS_ONLY) {
    if (!native.backend) throw new Error(`native addon ${native.note}`);
    process.stdout.write(JSON.stringify(nativeRows(native.backend, native.kernels)) + '\n');
    return;
  }
  log(`spiped-native crypto benchmark: node ${process.version}, OpenSSL ${process.versions.openssl}, ${cpus()[0]?.model ?? 'unknown CPU'}`);
  log(`native addon: ${native.note}`);
  log(`live backend (cryptoBackend()): ${JSON.stringify(cryptoBackend())}`);
  log(`MB = 1e6 bytes of plaintext; best of ${REPS} x ${MEASURE_MS} ms each\n`);

  const bound = opensslBound();
  log(`OpenSSL bulk (node:crypto, best of 16/64/256 KiB updates): AES-256-CTR ${bound.aesCtrMBps.toFixed(0)} MB/s, SHA-256 ${bound.sha256MBps.toFixed(0)} MB/s`);
  log(`OpenSSL bound per packet (1028 B AES-CTR + 1152 B SHA-256 per 1024 B payload): ${bound.boundMBps.toFixed(0)} MB/s\n`);

  const rows: Row[] = [];
  if (native.backend) rows.push(...nativeRows(native.backend, native.kernels));
  if (native.backend && native.kernels !== 'portable' && !args.has('--no-portable')) {
    const portable = portableRows();
    if (typeof portable === 'string') log(portable);
    else rows.push(...portable);
  }
  for (const chunk of CHUNKS) {
    const sealed = ring(chunk, native.backend ?? nodeCryptoBackend);
    rows.push(benchBackend('node-crypto backend', nodeCryptoBackend, chunk, sealed, true));
    rows.push(benchPlain(chunk, sealed));
  }
  rows.sort((a, b) => b.chunk - a.chunk);

  const plainOf = (chunk: number): Row | undefined => rows.find((r) => r.chunk === chunk && r.impl.startsWith('plain'));
  const table = rows.map((r) => {
    const plain = plainOf(r.chunk);
    return {
      ...r,
      sealVsBound: r.sealMBps / bound.boundMBps,
      openVsBound: r.openMBps / bound.boundMBps,
      sealVsPlain: plain ? r.sealMBps / plain.sealMBps : NaN,
      openVsPlain: plain ? r.openMBps / plain.openMBps : NaN,
    };
  });

  if (JSON_OUT) {
    process.stdout.write(JSON.stringify({ node: process.version, openssl: process.versions.openssl, native: native.note, opensslBulk: bound, rows: table }, null, 2) + '\n');
    return;
  }
  const head = ['implementation', 'chunk', 'seal MB/s', 'open MB/s', 'seal/bound', 'open/bound', 'seal/plain', 'open/plain'];
  const lines = table.map((r) => [
    r.impl,
    r.chunk >= 1024 ? `${r.chunk / 1024} KiB` : `${r.chunk} B`,
    r.sealMBps.toFixed(0),
    r.openMBps.toFixed(0),
    r.sealVsBound.toFixed(2) + 'x',
    r.openVsBound.toFixed(2) + 'x',
    r.sealVsPlain.toFixed(1) + 'x',
    r.openVsPlain.toFixed(1) + 'x',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] as string).length)));
  const fmt = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join('  ');
  log(fmt(head));
  log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const l of lines) log(fmt(l));
  const n64 = table.find((r) => r.impl === `native ${native.kernels} sealInto/openInto` && r.chunk === 65536);
  if (n64) {
    const ok = (x: number, min: number): string => (x >= min ? 'ok' : 'BELOW TARGET');
    log(`\ntargets (64 KiB, native ${native.kernels} sealInto/openInto): >= 0.9x OpenSSL bound: seal ${n64.sealVsBound.toFixed(2)}x ${ok(n64.sealVsBound, 0.9)}, open ${n64.openVsBound.toFixed(2)}x ${ok(n64.openVsBound, 0.9)}; >= 4x plain: seal ${n64.sealVsPlain.toFixed(1)}x ${ok(n64.sealVsPlain, 4)}, open ${n64.openVsPlain.toFixed(1)}x ${ok(n64.openVsPlain, 4)}`);
  }
}

// ---- A/B: an older build against this one, interleaved in one process -----------------------

/** The packet API of a spiped-native build's dist/crypto/index.js. */
interface CodecModule {
  PacketSealer: typeof PacketSealer;
  PacketOpener: typeof PacketOpener;
  cryptoBackend: typeof cryptoBackend;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1] as number;
};

/** sealInto / openInto MB/s of one build's live backend for `chunk`-byte calls. */
function abMeasure(mod: CodecModule, chunk: number, sealed: Buffer[]): { seal: number; open: number } {
  const data = randomBytes(chunk);
  const sealOut = Buffer.alloc(Math.ceil(chunk / 1024) * PACKET_LEN);
  const openOut = Buffer.alloc(Math.ceil(chunk / 1024) * 1024);
  const s = new mod.PacketSealer(E, H, 0n);
  const seal = measure(chunk, () => void s.sealInto(data, sealOut, 0));
  let o = new mod.PacketOpener(E, H, 0n);
  let k = 0;
  const open = measure(chunk, () => {
    if (k === sealed.length) {
      k = 0;
      o = new mod.PacketOpener(E, H, 0n);
    }
    o.openInto(sealed[k++] as Buffer, openOut, 0);
  });
  return { seal, open };
}

async function abMain(dir: string): Promise<void> {
  const oldMod = (await import(pathToFileURL(join(dir, 'dist/crypto/index.js')).href)) as CodecModule;
  const newMod: CodecModule = { PacketSealer, PacketOpener, cryptoBackend };
  log(`A/B: old = ${dir} ${JSON.stringify(oldMod.cryptoBackend())}`);
  log(`     new = this build ${JSON.stringify(cryptoBackend())}`);
  log(`${AB_ROUNDS} rounds, each measuring both (order alternating); best of ${REPS} x ${MEASURE_MS} ms per measurement; medians in MB/s\n`);
  const results: Array<Record<string, number | string>> = [];
  for (const chunk of [1024, 65536]) {
    const sealed = ring(chunk, nativeOfThisProcess().backend ?? nodeCryptoBackend);
    const got = { oldSeal: [] as number[], newSeal: [] as number[], oldOpen: [] as number[], newOpen: [] as number[] };
    for (let r = 0; r < AB_ROUNDS; r++) {
      const order: Array<['old' | 'new', CodecModule]> = r % 2 === 0 ? [['old', oldMod], ['new', newMod]] : [['new', newMod], ['old', oldMod]];
      for (const [which, mod] of order) {
        const m = abMeasure(mod, chunk, sealed);
        got[`${which}Seal`].push(m.seal);
        got[`${which}Open`].push(m.open);
      }
    }
    const row = {
      chunk: `${chunk / 1024} KiB`,
      oldSeal: median(got.oldSeal), newSeal: median(got.newSeal),
      oldOpen: median(got.oldOpen), newOpen: median(got.newOpen),
    };
    results.push(row);
    log(`${row.chunk.padStart(6)} sealInto: old ${row.oldSeal.toFixed(0)}, new ${row.newSeal.toFixed(0)} (new/old ${(row.newSeal / row.oldSeal).toFixed(3)}); ` +
      `openInto: old ${row.oldOpen.toFixed(0)}, new ${row.newOpen.toFixed(0)} (new/old ${(row.newOpen / row.oldOpen).toFixed(3)})`);
    log(`        per round sealInto old ${got.oldSeal.map((x) => x.toFixed(0)).join(' ')} | new ${got.newSeal.map((x) => x.toFixed(0)).join(' ')}`);
    log(`        per round openInto old ${got.oldOpen.map((x) => x.toFixed(0)).join(' ')} | new ${got.newOpen.map((x) => x.toFixed(0)).join(' ')}`);
  }
  if (JSON_OUT) process.stdout.write(JSON.stringify(results, null, 2) + '\n');
}

if (AB_DIR) await abMain(AB_DIR);
else main();
