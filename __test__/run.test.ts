// `spiped-native run <config file>`: several tunnels from one TOML file in one
// process, with C peers (C spipe into a decrypting tunnel holding two keys, an
// encrypting tunnel into a C spiped -d), per-tunnel connection logs, one
// exporter labelled by tunnel, SIGHUP reloading every tunnel, SIGTERM draining
// them; the whole file checked before anything is bound, each problem named by
// tunnel and field; a tunnel that cannot start stops them all.

import test from 'ava';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { exchange, freePort, referenceAvailable, runSpipe, spawnCollecting, startDaemon, startEchoServer, tempDir, waitForListener, writeKey } from './helpers/processes.js';
import { OUR_SPIPED_NATIVE, runCli, waitUntil } from './helpers/cli-run.js';

const HAVE_C = referenceAvailable();
const cTest = HAVE_C ? test.serial : test.skip;
const loopback = (port: number): string => `[127.0.0.1]:${port}`;

/** Starts `spiped-native run <file>`; collects its stderr. */
function startRun(file: string): { child: ChildProcess; stderr: () => string } {
  return spawnCollecting(process.execPath, [OUR_SPIPED_NATIVE, 'run', file]);
}

cTest('two tunnels from one file with C peers: logs, one exporter, SIGHUP reloads both, SIGTERM drains both', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const [newKey, oldKey, otherKey] = [writeKey(dir, 'new.key'), writeKey(dir, 'old.key'), writeKey(dir, 'other.key')];
  const echo = await startEchoServer();
  t.teardown(() => echo.server.close());
  const [inPort, outPort, cPort, metricsPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const c = await startDaemon('c', ['-d', '-s', loopback(cPort), '-t', loopback(echo.port), '-k', otherKey], { port: cPort });
  t.teardown(() => c.stop());
  const file = join(dir, 'tunnels.toml');
  writeFileSync(
    file,
    [
      `metrics = "${loopback(metricsPort)}"`,
      '',
      '[tunnel.inbound]',
      'mode = "decrypt"',
      `source = "${loopback(inPort)}"`,
      `target = "${loopback(echo.port)}"`,
      `key = ["${newKey}", "${oldKey}"]`,
      'log-connections = true',
      '',
      '[tunnel.outbound]',
      'mode = "encrypt"',
      `source = "${loopback(outPort)}"`,
      `target = "${loopback(cPort)}"`,
      `key = "${otherKey}"`,
      'max-connections = 4',
      'fast = true',
      '',
    ].join('\n'),
  );
  const run = startRun(file);
  t.teardown(() => void run.child.kill('SIGKILL'));
  await waitForListener({ port: inPort }, 10000, run.child.pid);
  await waitForListener({ port: outPort }, 10000, run.child.pid);
  await waitForListener({ port: metricsPort }, 10000, run.child.pid);

  const data = randomBytes(1500);
  t.true((await runSpipe('c', ['-t', loopback(inPort), '-k', oldKey], data)).stdout.equals(data), run.stderr());
  t.true((await exchange({ port: outPort }, data)).received.equals(data), 'through the outbound tunnel and the C -d');
  t.true(await waitUntil(() => /connection tunnel=inbound peer=127\.0\.0\.1:\d+ key=2 .* outcome=ok/.test(run.stderr())), run.stderr());
  t.notRegex(run.stderr(), /tunnel=outbound/, 'the outbound tunnel logs no connections');
  const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  t.regex(metrics, /spiped_connections_total\{tunnel="inbound",outcome="ok"\} 1/);
  t.regex(metrics, /spiped_connections_total\{tunnel="outbound",outcome="ok"\} 1/);

  writeFileSync(newKey, randomBytes(32));
  run.child.kill('SIGHUP');
  t.true(await waitUntil(() => /inbound: Reloaded: keys read again/.test(run.stderr()) && /outbound: Reloaded: keys read again/.test(run.stderr())), run.stderr());
  t.is((await runSpipe('c', ['-t', loopback(inPort), '-k', newKey], data)).code, 0, 'the new key works after SIGHUP');

  const exited = new Promise<number | null>((resolve) => run.child.once('exit', (code) => resolve(code)));
  run.child.kill('SIGTERM');
  t.is(await exited, 0);
});

test('the whole file is checked first: every problem is named by tunnel and field, nothing is started', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const key = writeKey(dir);
  const port = await freePort();
  const file = join(dir, 'bad.toml');
  writeFileSync(
    file,
    [
      'colour = "blue"',
      '[tunnel.good]',
      'mode = "decrypt"',
      `source = "${loopback(port)}"`,
      'target = "[127.0.0.1]:1"',
      `key = "${key}"`,
      '[tunnel.bad]',
      'mode = "sideways"',
      `source = "${loopback(port)}"`,
      'target = "no-port"',
      `key = "${join(dir, 'missing.key')}"`,
      'max-connections = -1',
      'timeout = "5"',
      'proxy-protocol = "v3"',
      'speed = 9',
      '[tunnel.twice]',
      'mode = "encrypt"',
      `source = "${loopback(port)}"`,
      'target = "[127.0.0.1]:2"',
      `key = ["${key}", "${key}"]`,
      'fast = true',
      'require-pfs = true',
    ].join('\n'),
  );
  const result = await runCli(OUR_SPIPED_NATIVE, ['run', file], { dir });
  t.is(result.code, 1);
  const lines = result.stderr.trimEnd().split('\n');
  const expected = [
    'colour: unknown top-level field (known: metrics, user, tunnel)',
    'tunnel "bad": speed: unknown field (known: mode, source, target, key, bind, fast, require-pfs, max-connections, timeout, resolve-every, keep-alive, wait-for-dns, log-connections, proxy-protocol)',
    'tunnel "bad": mode: must be "encrypt" or "decrypt", not "sideways"',
    'tunnel "bad": target: Invalid socket address "no-port": missing ":port" (Unix socket paths must be absolute)',
    `tunnel "bad": key: ${join(dir, 'missing.key')}: No such file or directory`,
    'tunnel "bad": max-connections: must be a whole number >= 0 (0 = unlimited), not -1',
    'tunnel "bad": timeout: must be a number of seconds in (0, 2147483], not "5"',
    'tunnel "bad": proxy-protocol: must be "v1" or "v2", not "v3"',
    `tunnel "bad": source: ${loopback(port)} is tunnel "good"'s source too`,
    'tunnel "twice": key: only a decrypting tunnel takes several key files',
    'tunnel "twice": fast, require-pfs: cannot both be true',
    `tunnel "twice": source: ${loopback(port)} is tunnel "good"'s source too`,
  ];
  for (const line of expected) t.true(lines.includes(`spiped-native: ${file}: ${line}`), `${line}\nin:\n${result.stderr}`);
  t.is(lines.length, expected.length, result.stderr);

  writeFileSync(file, '[tunnel.a]\nmode = "decrypt\n');
  const syntax = await runCli(OUR_SPIPED_NATIVE, ['run', file], { dir });
  t.is(syntax.code, 1);
  t.regex(syntax.stderr, /^spiped-native: .*bad\.toml: Invalid TOML document: .* \(line 2, column \d+\)\n$/);
  const usage = await runCli(OUR_SPIPED_NATIVE, ['run'], { dir });
  t.is(usage.code, 1);
  t.is(usage.stderr, 'usage: spiped-native run <config file>\n');
});

test('a tunnel that cannot bind stops them all, naming it', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const key = writeKey(dir);
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  t.teardown(() => taken.close());
  const takenPort = (taken.address() as AddressInfo).port;
  const firstPort = await freePort();
  const file = join(dir, 'clash.toml');
  const tunnel = (name: string, port: number): string =>
    `[tunnel.${name}]\nmode = "decrypt"\nsource = "${loopback(port)}"\ntarget = "[127.0.0.1]:1"\nkey = "${key}"\n`;
  writeFileSync(file, tunnel('first', firstPort) + tunnel('second', takenPort));
  const result = await runCli(OUR_SPIPED_NATIVE, ['run', file], { dir });
  t.is(result.code, 1);
  t.is(result.stderr, 'spiped-native: tunnel "second": Error binding socket: Address already in use\n');
});
