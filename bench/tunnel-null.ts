// Owns the "null daemon" of the tunnel benchmark: a plain Node TCP relay that accepts
// spiped's command line (-s <source> -t <target>, IPv4 `[a.b.c.d]:port` only; -e / -d
// as below; every other flag is ignored) and forwards bytes both ways with no handshake
// and no crypto, with TCP_NODELAY, backpressure and half-close, reading its sockets the
// way our daemon does (readChunks: in place, or by 'data' events with
// SPIPED_NATIVE_USER_BUFFER=0). With -e or -d, the side spiped would encrypt carries
// spiped-sized packets (payload zero-padded to 1024 bytes, its length, 32 zero bytes
// where the MAC goes), so the wire is the same shape as spiped's and only the crypto
// is missing. `node build/bench/tunnel.js` runs it in the round-trip phase as the floor
// any Node daemon pays on this machine (it is not a spiped). With -d --junk-floor it is
// the junk phase's floor instead: per connection only what any Node `spiped -d` must do
// before a client proves it holds the key (accept, connect to the target, send a 32-byte
// nonce, read the client's first 320 bytes, drop both at the -o timeout or when the
// client ends or has sent them), and no handshake or crypto beyond that.
import { randomBytes } from 'node:crypto';
import { createServer, connect, type Socket } from 'node:net';
import { readChunks } from 'spiped-native/socket-reads';

/** The value after `flag` in argv; exits 1 if missing. */
function flagValue(argv: readonly string[], flag: string): string {
  const i = argv.indexOf(flag);
  const v = i >= 0 ? argv[i + 1] : undefined;
  if (v === undefined) {
    process.stderr.write(`tunnel-null: missing ${flag}\n`);
    process.exit(1);
  }
  return v;
}

/** Parses `[host]:port` into host and port; exits 1 on anything else. */
function parseEndpoint(text: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text);
  if (m === null) {
    process.stderr.write(`tunnel-null: unsupported address ${text}\n`);
    process.exit(1);
  }
  return { host: m[1]!, port: Number(m[2]) };
}

const PAYLOAD = 1024;
const PACKET = 1060;

/** Copies `chunk` into spiped-sized packets: each payload zero-padded to 1024 bytes, its length (4 bytes, big-endian), 32 zero bytes for the MAC. */
function frame(chunk: Buffer): Buffer {
  const count = Math.ceil(chunk.length / PAYLOAD);
  const packets = Buffer.allocUnsafe(count * PACKET);
  for (let i = 0; i < count; i++) {
    const at = i * PACKET;
    const length = chunk.copy(packets, at, i * PAYLOAD, (i + 1) * PAYLOAD);
    packets.fill(0, at + length, at + PACKET);
    packets.writeUInt32BE(length, at + PAYLOAD);
  }
  return packets;
}

/** Returns a function that reassembles frame()'s packets from a byte stream and returns a copy of the payloads they complete. */
function unframer(): (chunk: Buffer) => Buffer {
  let partial = Buffer.alloc(0);
  return (chunk) => {
    if (partial.length === 0 && chunk.length === PACKET) return Buffer.from(chunk.subarray(0, Math.min(PAYLOAD, chunk.readUInt32BE(PAYLOAD))));
    const data = partial.length > 0 ? Buffer.concat([partial, chunk]) : chunk;
    const whole = data.length - (data.length % PACKET);
    const payloads: Buffer[] = [];
    for (let at = 0; at < whole; at += PACKET) {
      payloads.push(data.subarray(at, at + Math.min(PAYLOAD, data.readUInt32BE(at + PAYLOAD))));
    }
    partial = Buffer.from(data.subarray(whole));
    return Buffer.concat(payloads);
  };
}

/** Relays `from` into `to` through `convert` (which must copy: a chunk read in place is only valid during the callback), with backpressure and half-close. */
function relay(from: Socket, to: Socket, convert: (chunk: Buffer) => Buffer): void {
  const forward = (): void => {
    readChunks(from, (chunk: Buffer) => {
      const out = convert(chunk);
      if (out.length > 0 && !to.write(out)) from.pause();
    });
  };
  if (from.connecting) from.once('connect', forward);
  else forward();
  to.on('drain', () => from.resume());
  from.on('end', () => to.end());
  from.on('error', () => to.destroy());
  from.on('close', () => to.destroy());
}

const argv = process.argv.slice(2);
const source = parseEndpoint(flagValue(argv, '-s'));
const target = parseEndpoint(flagValue(argv, '-t'));
const copy = (chunk: Buffer): Buffer => Buffer.from(chunk);

/** The junk floor's connection: the target connected at accept, a nonce sent, the client's first 320 bytes awaited, both dropped at the timeout, at the client's end, or once the 320 bytes are in. */
function junkFloor(accepted: Socket, timeoutMs: number): void {
  const out = connect({ ...target, allowHalfOpen: true });
  const drop = (): void => {
    clearTimeout(timer);
    accepted.destroy();
    out.destroy();
  };
  const timer = setTimeout(drop, timeoutMs);
  let received = 0;
  out.on('error', drop);
  accepted.on('error', drop);
  accepted.on('end', drop);
  accepted.on('close', drop);
  accepted.on('data', (chunk: Buffer) => {
    received += chunk.length;
    if (received >= 320) drop(); // a real daemon would check the MAC here and drop a junk client
  });
  accepted.write(randomBytes(32));
}

if (argv.includes('--junk-floor')) {
  const timeoutMs = Number(flagValue(argv, '-o')) * 1000;
  createServer({ allowHalfOpen: true }, (accepted) => junkFloor(accepted, timeoutMs)).listen(source.port, source.host);
} else createServer({ noDelay: true, allowHalfOpen: true }, (accepted) => {
  const out = connect({ ...target, noDelay: true, allowHalfOpen: true });
  if (argv.includes('-e')) {
    relay(accepted, out, frame);
    relay(out, accepted, unframer());
  } else if (argv.includes('-d')) {
    relay(accepted, out, unframer());
    relay(out, accepted, frame);
  } else {
    relay(accepted, out, copy);
    relay(out, accepted, copy);
  }
}).listen(source.port, source.host);
process.on('SIGTERM', () => process.exit(0));
