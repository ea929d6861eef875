// The quick-start demo: a real encrypted tunnel on loopback. It generates a key
// into a temp dir with `spiped-native keygen`, starts a decrypting and an
// encrypting `spiped` (our CLI, as real processes) with a byte-counting tap
// between them, sends a message through, and shows what crossed the wire.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cryptoBackend } from 'spiped-native';

const root = fileURLToPath(new URL('../../', import.meta.url));
const cli = (name: string): string => join(root, 'dist/cli', `${name}.js`);

/** Listens on a free loopback port; resolves to it. */
function listen(server: Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

/** Starts `spiped -F args` and resolves once `port` accepts connections. */
async function startSpiped(args: string[], port: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, [cli('spiped'), '-F', ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
  for (let tries = 0; tries < 200; tries++) {
    const up = await new Promise<boolean>((resolve) => {
      const probe = connect(port, '127.0.0.1', () => {
        probe.destroy();
        resolve(true);
      });
      probe.on('error', () => resolve(false));
    });
    if (up) return child;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`spiped ${args.join(' ')} did not start`);
}

const dir = mkdtempSync(join(tmpdir(), 'spiped-demo-'));
const key = join(dir, 'demo.key');
const children: ChildProcess[] = [];
const servers: Server[] = [];
try {
  const keygen = spawnSync(process.execPath, [cli('spiped-native'), 'keygen', key], { encoding: 'utf8' });
  process.stdout.write(keygen.stderr);
  const backend = cryptoBackend();
  console.log(`crypto backend: ${backend.name} (AES-NI ${backend.aesni}, SHA-NI ${backend.shani}, VAES ${backend.vaes})`);

  // The service behind the tunnel: replies with what it got, upper-cased.
  const service = createServer((socket) => socket.on('data', (data: Buffer) => socket.end(data.toString().toUpperCase())));
  servers.push(service);
  const servicePort = await listen(service);

  // spiped -d in front of the service.
  const decryptPort = await freePort();
  children.push(await startSpiped(['-d', '-s', `[127.0.0.1]:${decryptPort}`, '-t', `[127.0.0.1]:${servicePort}`, '-k', key], decryptPort));

  // A tap between the two daemons, to show the encrypted traffic of each connection.
  let wire = { bytes: 0, head: Buffer.alloc(0) };
  const tap = createServer((inbound) => {
    const seen = { bytes: 0, head: Buffer.alloc(0) };
    const outbound = connect(decryptPort, '127.0.0.1');
    inbound.on('data', (chunk: Buffer) => {
      if (seen.head.length < 344) seen.head = Buffer.concat([seen.head, chunk]).subarray(0, 344);
      seen.bytes += chunk.length;
      if (seen.bytes > 320) wire = seen; // the connection that carried packets (not a readiness probe)
      outbound.write(chunk);
    });
    outbound.pipe(inbound);
    inbound.on('end', () => outbound.end());
    inbound.on('error', () => outbound.destroy());
    outbound.on('error', () => inbound.destroy());
  });
  servers.push(tap);
  const tapPort = await listen(tap);

  // spiped -e: plaintext in, encrypted out to the tap.
  const encryptPort = await freePort();
  children.push(await startSpiped(['-e', '-s', `[127.0.0.1]:${encryptPort}`, '-t', `[127.0.0.1]:${tapPort}`, '-k', key], encryptPort));

  const message = 'hello through an encrypted spiped tunnel';
  const reply = await new Promise<string>((resolve, reject) => {
    const client = connect(encryptPort, '127.0.0.1', () => client.write(message));
    const parts: Buffer[] = [];
    client.on('data', (chunk: Buffer) => parts.push(chunk));
    client.on('end', () => resolve(Buffer.concat(parts).toString()));
    client.on('error', reject);
  });
  console.log(`sent     : ${JSON.stringify(message)} (${message.length} bytes)`);
  console.log(`on wire  : ${wire.bytes} bytes client->server (32 nonce + 288 DH value and MAC + 1060 per packet)`);
  console.log(`packet 0 : ${wire.head.subarray(320).toString('hex')}... (AES-256-CTR + HMAC-SHA256)`);
  console.log(`received : ${JSON.stringify(reply)}`);
  if (reply !== message.toUpperCase()) throw new Error('the reply did not come back intact');
  console.log('demo ok: plaintext -> spiped -e -> (encrypted) -> spiped -d -> service and back');
} finally {
  for (const child of children) child.kill('SIGTERM');
  for (const server of servers) server.close();
  rmSync(dir, { recursive: true, force: true });
}

/** A loopback port that was free a moment ago. */
async function freePort(): Promise<number> {
  const probe = createServer();
  const port = await listen(probe);
  await new Promise((resolve) => probe.close(resolve));
  return port;
}
