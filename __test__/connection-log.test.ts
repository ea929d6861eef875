// --log-connections: one key=value line per ended connection, with C peers:
// ok (bytes each way, which key), a wrong key, -g against -f, a target that
// refuses, a handshake that times out, a damaged packet; -e as well as -d;
// identical lines are never coalesced; with --syslog they go to logger(1);
// the library's 'connection' event.

import test from 'ava';
import { randomBytes } from 'node:crypto';
import { connect as netConnect } from 'node:net';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTunnel, type ConnectionRecord } from 'spiped-native';
import { OUR_SPIPED, exchange, freePort, referenceAvailable, runSpipe, startDaemon, startEchoServer, startRelay, tempDir, writeKey, type Daemon } from './helpers/processes.js';
import { killAtTeardown, runCli, waitUntil } from './helpers/cli-run.js';

const HAVE_C = referenceAvailable();
const cTest = HAVE_C ? test.serial : test.skip;
const loopback = (port: number): string => `[127.0.0.1]:${port}`;
const LINE = /^spiped: connection peer=(\S+) key=(\S+) duration_ms=(\d+) to_target=(\d+) from_target=(\d+) outcome=(\S+) reason=(\S+)$/;

/** The connection log lines a daemon has written so far, parsed. */
function logLines(daemon: Daemon): { peer: string; key: string; toTarget: number; fromTarget: number; outcome: string; reason: string }[] {
  return daemon
    .stderr()
    .split('\n')
    .map((line) => LINE.exec(line))
    .filter((match) => match !== null)
    .map((m) => ({ peer: m[1]!, key: m[2]!, toTarget: Number(m[4]), fromTarget: Number(m[5]), outcome: m[6]!, reason: m[7]! }));
}

/** Waits until the daemon has logged `count` connections; returns the last one. */
async function nthLine(t: { true: (v: boolean, m?: string) => void }, daemon: Daemon, count: number): Promise<ReturnType<typeof logLines>[number]> {
  t.true(await waitUntil(() => logLines(daemon).length >= count, 10000), `${count} lines in: ${daemon.stderr()}`);
  return logLines(daemon)[count - 1]!;
}

cTest('-d: ok with bytes each way and the key that matched, wrong key, -g against -f, a refused target, a timeout', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const [first, second, wrong] = [writeKey(dir, 'a'), writeKey(dir, 'b'), writeKey(dir, 'c')];
  const echo = await startEchoServer();
  t.teardown(() => echo.server.close());
  const port = await freePort();
  const args = ['--log-connections', '-g', '-o', '1', '-d', '-s', loopback(port), '-t', loopback(echo.port), '-k', first, '-k', second];
  const daemon = await startDaemon('ours', args, { port });
  t.teardown(() => daemon.stop());

  const sent = randomBytes(3000);
  t.true((await runSpipe('c', ['-t', loopback(port), '-k', second], sent)).stdout.equals(sent));
  const ok = await nthLine(t, daemon, 1);
  t.regex(ok.peer, /^127\.0\.0\.1:\d+$/);
  t.like(ok, { key: '2', toTarget: 3000, fromTarget: 3000, outcome: 'ok', reason: '-' });

  await runSpipe('c', ['-t', loopback(port), '-k', wrong], Buffer.from('x'));
  t.like(await nthLine(t, daemon, 2), { key: '-', toTarget: 0, fromTarget: 0, outcome: 'handshake_failed', reason: 'bad_mac' });

  await runSpipe('c', ['-f', '-t', loopback(port), '-k', first], Buffer.from('x'));
  t.like(await nthLine(t, daemon, 3), { key: '-', outcome: 'handshake_failed', reason: 'no_forward_secrecy' });

  const silent = netConnect({ port, host: '127.0.0.1' }); // says nothing: the handshake times out after -o 1
  silent.on('error', () => {});
  t.teardown(() => silent.destroy());
  t.like(await nthLine(t, daemon, 4), { outcome: 'timeout', reason: '-' });

  echo.server.close();
  await runSpipe('c', ['-t', loopback(port), '-k', first], Buffer.from('x'));
  t.like(await nthLine(t, daemon, 5), { outcome: 'connect_failed', reason: '-' });
});

cTest('-e to a C -d: ok with bytes each way; a damaged packet is bad_packet at our -d behind a C -e', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const key = writeKey(dir);
  const echo = await startEchoServer();
  t.teardown(() => echo.server.close());
  const [cPort, ePort] = [await freePort(), await freePort()];
  const cd = await startDaemon('c', ['-d', '-s', loopback(cPort), '-t', loopback(echo.port), '-k', key], { port: cPort });
  t.teardown(() => cd.stop());
  const ours = await startDaemon('ours', ['--log-connections', '-e', '-s', loopback(ePort), '-t', loopback(cPort), '-k', key], { port: ePort });
  t.teardown(() => ours.stop());
  const reply = await exchange({ port: ePort }, Buffer.alloc(2500, 7));
  t.is(reply.received.length, 2500);
  t.like(await nthLine(t, ours, 1), { key: '1', toTarget: 2500, fromTarget: 2500, outcome: 'ok' });

  // C -e -> tampering relay -> our -d: a bit flipped in the first packet toward -d.
  const [dPort, relayPort, cePort] = [await freePort(), await freePort(), await freePort()];
  const d = await startDaemon('ours', ['--log-connections', '-d', '-s', loopback(dPort), '-t', loopback(echo.port), '-k', key], { port: dPort });
  t.teardown(() => d.stop());
  const relay = await startRelay(relayPort, dPort, { direction: 'toServer', offset: 320 + 100 });
  t.teardown(() => relay.close());
  const ce = await startDaemon('c', ['-e', '-s', loopback(cePort), '-t', loopback(relayPort), '-k', key], { port: cePort });
  t.teardown(() => ce.stop());
  await exchange({ port: cePort }, Buffer.from('damaged on the way'));
  t.like(await nthLine(t, d, 1), { key: '1', toTarget: 0, outcome: 'bad_packet' });
});

test('identical connection lines are all written (never coalesced like warnings)', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const key = writeKey(dir);
  const source = join(dir, 'in.sock');
  const daemon = await startDaemon('ours', ['--log-connections', '-d', '-s', source, '-t', '[127.0.0.1]:1', '-k', key], { path: source });
  t.teardown(() => daemon.stop());
  for (let i = 0; i < 6; i++) await exchange({ path: source }, Buffer.alloc(0));
  await nthLine(t, daemon, 6);
  t.true(logLines(daemon).every((line) => line.peer === 'unix'));
  t.notRegex(daemon.stderr(), /repeated/);
});

test('with --syslog, connection lines go to the system log after detaching, each one', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const key = writeKey(dir);
  // A stand-in logger(1) first in PATH, recording each line it reads.
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  const log = join(dir, 'syslog.txt');
  writeFileSync(join(bin, 'logger'), `#!/bin/sh\nwhile IFS= read -r line; do echo "$line" >> "${log}"; done\n`, { mode: 0o755 });
  const source = join(dir, 'in.sock');
  const pidfile = join(dir, 'daemon.pid');
  killAtTeardown(t, pidfile);
  const env = { PATH: `${bin}:${process.env['PATH'] ?? ''}` };
  const run = await runCli(OUR_SPIPED, ['--syslog', '--log-connections', '-d', '-s', source, '-t', '[127.0.0.1]:1', '-k', key, '-p', pidfile], { dir, env });
  t.is(run.code, 0, run.stderr);
  for (let i = 0; i < 4; i++) await exchange({ path: source }, Buffer.alloc(0));
  const lines = (): string[] => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n') : []);
  t.true(await waitUntil(() => lines().length === 4, 10000), lines().join('\n'));
  t.true(lines().every((line) => /^connection peer=unix key=- duration_ms=\d+ to_target=0 from_target=0 outcome=(handshake_failed reason=peer_closed|connect_failed reason=-)$/.test(line)), lines().join('\n'));
  t.is(readFileSync(run.stderrPath, 'utf8'), '', 'nothing on stderr after detaching');
});

test("the library's 'connection' event carries the record", async (t) => {
  const echo = await startEchoServer();
  t.teardown(() => echo.server.close());
  const key = randomBytes(32);
  const d = await createTunnel({ mode: 'decrypt', source: '[127.0.0.1]:0', target: loopback(echo.port), key, fast: true });
  t.teardown(() => d.close());
  const e = await createTunnel({ mode: 'encrypt', source: '[127.0.0.1]:0', target: `[127.0.0.1]:${(d.address() as { port: number }).port}`, key, fast: true });
  t.teardown(() => e.close());
  const records: ConnectionRecord[] = [];
  d.on('connection', (record) => records.push(record));
  await exchange({ port: (e.address() as { port: number }).port }, Buffer.from('hello'));
  t.true(await waitUntil(() => records.length === 1));
  t.like(records[0], { keyIndex: 0, toTarget: 5, fromTarget: 5, outcome: 'ok', reason: null, error: null });
});
