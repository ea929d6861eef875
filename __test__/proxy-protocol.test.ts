// --proxy-protocol: the header read at the target. On -e it carries the
// plaintext client's address and travels inside the encrypted stream, passed
// on unchanged by a C spiped -d; on -d it carries the encrypted peer's address
// (a C spiped -e's outgoing connection). v1 and v2, IPv4, IPv6 and Unix
// sources; a bad value is a clear error; createTunnel's option.

import test from 'ava';
import { connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import { createTunnel } from 'spiped-native';
import { PROXY_V2_SIGNATURE, proxyHeader } from 'spiped-native/proxy-protocol';
import { OUR_SPIPED, exchange, freePort, referenceAvailable, sinkPairSetup, startDaemon, startSinkServer, tempDir, writeKey } from './helpers/processes.js';
import { runCli, waitUntil } from './helpers/cli-run.js';

const HAVE_C = referenceAvailable();
const cTest = HAVE_C ? test.serial : test.skip;
const loopback = (port: number): string => `[127.0.0.1]:${port}`;

/** A parsed PROXY header and the bytes after it. */
interface Parsed {
  family: string; // TCP4, TCP6, UNKNOWN (v1) / UNSPEC (v2)
  source: string;
  destination: string;
  sourcePort: number;
  destinationPort: number;
  rest: Buffer;
}

/** Parses the PROXY header (v1 or v2) at the start of `bytes`, as a target behind the tunnel would. */
function parseHeader(bytes: Buffer): Parsed {
  if (bytes.subarray(0, 12).equals(PROXY_V2_SIGNATURE)) {
    if (bytes[12] !== 0x21) throw new Error(`bad version/command byte ${bytes[12]}`);
    const length = bytes.readUInt16BE(14);
    const body = bytes.subarray(16, 16 + length);
    const rest = bytes.subarray(16 + length);
    if (bytes[13] === 0x11) {
      return { family: 'TCP4', source: [...body.subarray(0, 4)].join('.'), destination: [...body.subarray(4, 8)].join('.'), sourcePort: body.readUInt16BE(8), destinationPort: body.readUInt16BE(10), rest };
    }
    if (bytes[13] === 0x21) {
      const v6 = (b: Buffer): string => Array.from({ length: 8 }, (_, i) => b.readUInt16BE(i * 2).toString(16)).join(':');
      return { family: 'TCP6', source: v6(body.subarray(0, 16)), destination: v6(body.subarray(16, 32)), sourcePort: body.readUInt16BE(32), destinationPort: body.readUInt16BE(34), rest };
    }
    return { family: 'UNSPEC', source: '', destination: '', sourcePort: 0, destinationPort: 0, rest };
  }
  const end = bytes.indexOf('\r\n');
  const fields = bytes.subarray(0, end).toString().split(' ');
  if (fields[0] !== 'PROXY') throw new Error(`no PROXY header: ${JSON.stringify(bytes.subarray(0, 40).toString())}`);
  return { family: fields[1]!, source: fields[2] ?? '', destination: fields[3] ?? '', sourcePort: Number(fields[4] ?? 0), destinationPort: Number(fields[5] ?? 0), rest: bytes.subarray(end + 2) };
}

/** Connects to `port` on `host`, sends `data`, half-closes; resolves to the local port it used once the reply has ended. */
function sendFrom(host: string, port: number, data: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket: Socket = netConnect({ host, port, allowHalfOpen: true });
    socket.on('error', reject);
    socket.on('connect', () => socket.end(data));
    socket.resume();
    socket.on('end', () => resolve(socket.localPort!));
  });
}

for (const version of ['v1', 'v2'] as const) {
  cTest(`-e --proxy-protocol ${version}: the plaintext client's address reaches the target through a C spiped -d`, async (t) => {
    const { key, sink, dPort, ePort, daemons } = await sinkPairSetup((fn) => t.teardown(fn));
    daemons.push(await startDaemon('c', ['-d', '-s', loopback(dPort), '-t', loopback(sink.port), '-k', key], { port: dPort }));
    daemons.push(await startDaemon('ours', ['--proxy-protocol', version, '-e', '-s', loopback(ePort), '-t', loopback(dPort), '-k', key], { port: ePort }));
    const clientPort = await sendFrom('127.0.0.1', ePort, 'payload after the header');
    t.true(await waitUntil(() => sink.received.length === 1 && sink.received[0]!.length > 0));
    const header = parseHeader(sink.received[0]!);
    t.like(header, { family: 'TCP4', source: '127.0.0.1', destination: '127.0.0.1', sourcePort: clientPort, destinationPort: ePort });
    t.is(header.rest.toString(), 'payload after the header');
  });
}

cTest('-d --proxy-protocol v1 and v2: the encrypted peer (a C spiped -e) is named to the target', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const key = writeKey(dir);
  for (const version of ['v1', 'v2']) {
    const sink = await startSinkServer();
    t.teardown(() => sink.server.close());
    const [dPort, ePort] = [await freePort(), await freePort()];
    const d = await startDaemon('ours', ['--proxy-protocol', version, '-d', '-s', loopback(dPort), '-t', loopback(sink.port), '-k', key], { port: dPort });
    t.teardown(() => d.stop());
    const e = await startDaemon('c', ['-e', '-s', loopback(ePort), '-t', loopback(dPort), '-k', key], { port: ePort });
    t.teardown(() => e.stop());
    await exchange({ port: ePort }, Buffer.from('x'));
    t.true(await waitUntil(() => sink.received.length === 1 && sink.received[0]!.length > 0));
    const header = parseHeader(sink.received[0]!);
    t.like(header, { family: 'TCP4', source: '127.0.0.1', destination: '127.0.0.1', destinationPort: dPort }, version);
    t.true(header.sourcePort > 0 && header.sourcePort !== ePort, `${version}: the C -e's outgoing port`);
    t.is(header.rest.toString(), 'x');
  }
});

test('IPv6 and Unix sources; createTunnel({ proxyProtocol })', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const key = Buffer.alloc(32, 9);
  const sink = await startSinkServer();
  t.teardown(() => sink.server.close());
  const d = await createTunnel({ mode: 'decrypt', source: '[127.0.0.1]:0', target: loopback(sink.port), key, fast: true });
  t.teardown(() => d.close());
  const dTarget = loopback((d.address() as { port: number }).port);
  const v6 = await createTunnel({ mode: 'encrypt', source: '[::1]:0', target: dTarget, key, fast: true, proxyProtocol: 'v2' });
  t.teardown(() => v6.close());
  const v6Port = (v6.address() as { port: number }).port;
  const clientPort = await sendFrom('::1', v6Port, 'six');
  t.true(await waitUntil(() => sink.received.length === 1 && sink.received[0]!.length > 0));
  t.like(parseHeader(sink.received[0]!), { family: 'TCP6', source: '0:0:0:0:0:0:0:1', destination: '0:0:0:0:0:0:0:1', sourcePort: clientPort, destinationPort: v6Port });
  const path = join(dir, 'plain.sock');
  const unix = await createTunnel({ mode: 'encrypt', source: path, target: dTarget, key, fast: true, proxyProtocol: 'v1' });
  t.teardown(() => unix.close());
  await exchange({ path }, Buffer.from('local'));
  t.true(await waitUntil(() => sink.received.length === 2 && sink.received[1]!.length > 0));
  t.is(sink.received[1]!.toString(), 'PROXY UNKNOWN\r\nlocal');
  await t.throwsAsync(createTunnel({ mode: 'encrypt', source: path, target: dTarget, key, proxyProtocol: 'v3' as 'v1' }), { instanceOf: TypeError });
});

test('proxyHeader: v1 and v2 bytes for a mapped IPv4 peer', (t) => {
  const socket = { remoteAddress: '::ffff:10.1.2.3', remotePort: 40000, localAddress: '::ffff:10.9.8.7', localPort: 8025 } as Socket;
  t.is(proxyHeader('v1', socket).toString(), 'PROXY TCP4 10.1.2.3 10.9.8.7 40000 8025\r\n');
  t.is(proxyHeader('v2', socket).toString('hex'), `${PROXY_V2_SIGNATURE.toString('hex')}2111000c0a0102030a0908079c401f59`);
  const mixed = { remoteAddress: '10.1.2.3', remotePort: 1, localAddress: '2001:db8::1', localPort: 2 } as Socket;
  t.is(proxyHeader('v1', mixed).toString(), 'PROXY TCP6 ::ffff:10.1.2.3 2001:db8::1 1 2\r\n');
  t.is(proxyHeader('v2', mixed).subarray(16, 32).toString('hex'), '00000000000000000000ffff0a010203');
});

test('--proxy-protocol takes v1 or v2', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const result = await runCli(OUR_SPIPED, ['-F', '--proxy-protocol', 'v3', '-e', '-s', '[127.0.0.1]:1', '-t', '[127.0.0.1]:2', '-k', writeKey(dir)], { dir });
  t.is(result.code, 1);
  t.is(result.stderr, 'spiped: --proxy-protocol takes v1 or v2, not "v3"\n');
});
