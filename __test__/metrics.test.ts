// --metrics: Prometheus text at /metrics, scraped while C peers connect:
// connections by outcome, handshake failures by reason, key matches by
// position, bytes each way, active and queued at -n, the crypto backend; clear
// errors for a bad or taken address; the library's tunnel.stats().

import test from 'ava';
import { randomBytes } from 'node:crypto';
import { connect as netConnect, createServer, type AddressInfo } from 'node:net';
import { connect, createTunnel, cryptoBackend } from 'spiped-native';
import { OUR_SPIPED, freePort, referenceAvailable, runSpipe, startDaemon, startEchoServer, tempDir, waitForListener, writeKey } from './helpers/processes.js';
import { runCli, waitUntil } from './helpers/cli-run.js';

const HAVE_C = referenceAvailable();
const cTest = HAVE_C ? test.serial : test.skip;
const loopback = (port: number): string => `[127.0.0.1]:${port}`;

/** GETs `path` from the exporter; resolves to the status and body. */
async function scrape(port: number, path = '/metrics'): Promise<{ status: number; body: string }> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: response.status, body: await response.text() };
}

/** Scrapes every 100 ms until `done(body)` holds (at most 10 s); resolves to the last body. */
async function scrapeUntil(port: number, done: (body: string) => boolean): Promise<string> {
  const deadline = Date.now() + 10000;
  let body = (await scrape(port)).body;
  while (!done(body) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    body = (await scrape(port)).body;
  }
  return body;
}

/** The value of the sample `series` (name and labels exactly as printed) in `body`, or undefined. */
function sample(body: string, series: string): number | undefined {
  const line = body.split('\n').find((text) => text.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

cTest('/metrics counts C spipe connections by outcome, failures by reason, keys by position, bytes each way, and names the backend', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const [first, second, wrong] = [writeKey(dir, 'a'), writeKey(dir, 'b'), writeKey(dir, 'c')];
  const echo = await startEchoServer();
  t.teardown(() => echo.server.close());
  const [port, metricsPort] = [await freePort(), await freePort()];
  const source = loopback(port);
  const daemon = await startDaemon('ours', ['--metrics', loopback(metricsPort), '-d', '-s', source, '-t', loopback(echo.port), '-k', first, '-k', second], { port });
  t.teardown(() => daemon.stop());
  await waitForListener({ port: metricsPort }, 5000, daemon.child.pid);

  const data = randomBytes(4000);
  for (const key of [second, second, first]) t.true((await runSpipe('c', ['-t', source, '-k', key], data)).stdout.equals(data));
  await runSpipe('c', ['-t', source, '-k', wrong], Buffer.from('x'));
  const tunnel = `tunnel="${source}"`;
  const body = await scrapeUntil(metricsPort, (text) => sample(text, `spiped_connections_total{${tunnel},outcome="handshake_failed"}`) === 1);
  t.is(sample(body, `spiped_connections_total{${tunnel},outcome="ok"}`), 3);
  t.is(sample(body, `spiped_connections_total{${tunnel},outcome="connect_failed"}`), 0);
  t.is(sample(body, `spiped_handshake_failures_total{${tunnel},reason="bad_mac"}`), 1);
  t.is(sample(body, `spiped_handshake_failures_total{${tunnel},reason="no_forward_secrecy"}`), 0);
  t.is(sample(body, `spiped_key_matches_total{${tunnel},key="1"}`), 1);
  t.is(sample(body, `spiped_key_matches_total{${tunnel},key="2"}`), 2);
  t.is(sample(body, `spiped_bytes_total{${tunnel},direction="to_target"}`), 12000);
  t.is(sample(body, `spiped_bytes_total{${tunnel},direction="from_target"}`), 12000);
  t.is(sample(body, `spiped_connections_active{${tunnel}}`), 0);
  t.is(sample(body, `spiped_connections_queued{${tunnel}}`), 0);
  const backend = cryptoBackend();
  t.is(sample(body, `spiped_crypto_backend_info{backend="${backend.name}",aesni="${backend.aesni}",shani="${backend.shani}",vaes="${backend.vaes}"}`), 1);
  t.regex(body, /# TYPE spiped_connections_total counter/);
  t.is((await scrape(metricsPort, '/')).status, 404);
});

test.serial('/metrics shows connections active and queued at -n, and live bytes', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const key = writeKey(dir);
  const echo = await startEchoServer();
  t.teardown(() => echo.server.close());
  const [port, metricsPort] = [await freePort(), await freePort()];
  const source = loopback(port);
  const daemon = await startDaemon('ours', ['--metrics', loopback(metricsPort), '-n', '1', '-d', '-s', source, '-t', loopback(echo.port), '-k', key], { port });
  t.teardown(() => daemon.stop());
  await waitForListener({ port: metricsPort }, 5000, daemon.child.pid);
  const held = await connect({ target: source, key });
  t.teardown(() => held.destroy());
  held.write('12345');
  await new Promise((resolve) => held.once('data', resolve));
  const queued = netConnect({ port, host: '127.0.0.1' }); // held at the limit while `held` lives
  queued.on('error', () => {});
  t.teardown(() => queued.destroy());
  const tunnel = `tunnel="${source}"`;
  const body = await scrapeUntil(metricsPort, (text) => sample(text, `spiped_connections_queued{${tunnel}}`) === 1);
  t.is(sample(body, `spiped_connections_queued{${tunnel}}`), 1, body);
  t.is(sample(body, `spiped_connections_active{${tunnel}}`), 1);
  t.is(sample(body, `spiped_bytes_total{${tunnel},direction="to_target"}`), 5, 'a live connection counts its bytes so far');
  t.is(sample(body, `spiped_bytes_total{${tunnel},direction="from_target"}`), 5);
  t.is(sample(body, `spiped_key_matches_total{${tunnel},key="1"}`), 1);
  held.destroy();
  const after = await scrapeUntil(metricsPort, (text) => sample(text, `spiped_connections_queued{${tunnel}}`) === 0);
  t.is(sample(after, `spiped_connections_queued{${tunnel}}`), 0, 'served once the slot freed');
});

test.serial('a bad or taken --metrics address is a clear error', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const key = writeKey(dir);
  const port = await freePort();
  const malformed = await runCli(OUR_SPIPED, ['-F', '--metrics', 'no-port', '-d', '-s', loopback(port), '-t', '[127.0.0.1]:1', '-k', key], { dir });
  t.is(malformed.code, 1);
  t.regex(malformed.stderr, /spiped: Error resolving --metrics address: no-port\n$/);
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  t.teardown(() => taken.close());
  const takenPort = (taken.address() as AddressInfo).port;
  const busy = await runCli(OUR_SPIPED, ['-F', '--metrics', loopback(takenPort), '-d', '-s', loopback(port), '-t', '[127.0.0.1]:1', '-k', key], { dir });
  t.is(busy.code, 1);
  t.is(busy.stderr, `spiped: Error binding metrics socket ${loopback(takenPort)}: Address already in use\n`);
});

test('tunnel.stats(): live connections count as active, with their bytes so far', async (t) => {
  const echo = await startEchoServer();
  t.teardown(() => echo.server.close());
  const key = randomBytes(32);
  const d = await createTunnel({ mode: 'decrypt', source: '[127.0.0.1]:0', target: loopback(echo.port), key, fast: true, maxConnections: 1 });
  t.teardown(() => d.close());
  const target = loopback((d.address() as { port: number }).port);
  const stream = await connect({ target, key, fast: true });
  t.teardown(() => stream.destroy());
  stream.write('abc');
  await new Promise((resolve) => stream.once('data', resolve));
  const queuedSocket = netConnect({ port: (d.address() as { port: number }).port, host: '127.0.0.1' });
  queuedSocket.on('error', () => {});
  t.teardown(() => queuedSocket.destroy());
  t.true(await waitUntil(() => d.stats().queued === 1));
  t.like(d.stats(), { active: 1, queued: 1, bytesToTarget: 3, bytesFromTarget: 3, keyMatches: [1] });
  t.is(d.stats().connections.ok, 0);
});
