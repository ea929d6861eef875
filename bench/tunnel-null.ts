// Owns the "null daemon" of the tunnel benchmark: a plain Node TCP relay that accepts
// spiped's command line (-s <source> -t <target>, IPv4 `[a.b.c.d]:port` only; every other
// flag is ignored) and forwards bytes both ways with no handshake and no crypto, with
// TCP_NODELAY, backpressure and half-close, reading its sockets the way our daemon
// does (readChunks: in place, or by 'data' events with SPIPED_NATIVE_USER_BUFFER=0).
// `node build/bench/tunnel.js --only ours --ours-cli build/bench/tunnel-null.js` then
// measures the floor any Node daemon pays on this machine (it is not a spiped).
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

/** Relays `from` into `to` with backpressure and half-close. */
function relay(from: Socket, to: Socket): void {
  // A chunk read in place is only valid during the callback: write a copy.
  const forward = (): void => {
    readChunks(from, (chunk: Buffer) => {
      if (!to.write(Buffer.from(chunk))) from.pause();
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
createServer({ noDelay: true, allowHalfOpen: true }, (accepted) => {
  const out = connect({ ...target, noDelay: true, allowHalfOpen: true });
  relay(accepted, out);
  relay(out, accepted);
}).listen(source.port, source.host);
process.on('SIGTERM', () => process.exit(0));
