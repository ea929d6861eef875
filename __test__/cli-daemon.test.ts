// spiped as a daemon, as real processes on loopback: detaching with its
// pidfile, -F, -k - while detaching, -u, the SIGTERM drain, -n, -o, -D and
// --syslog; and spipe carrying binary data with half-close. Where the
// reference behaves observably the same way, it runs in the same test.

import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import { connect, type SecureStream } from 'spiped-native';
import {
  C_SPIPED,
  OUR_SPIPE,
  OUR_SPIPED,
  freePort,
  referenceAvailable,
  startDaemon,
  startEchoServer,
  tempDir,
  writeKey,
  type Impl,
} from './helpers/processes.js';
import { closeServer, isAlive, killAtTeardown, killIfAlive, procStatus, runCli, startSilentServer, waitUntil } from './helpers/cli-run.js';

const IMPLS: Impl[] = referenceAvailable() ? ['ours', 'c'] : ['ours'];
const loopback = (port: number): string => `[127.0.0.1]:${port}`;
const binary = (impl: Impl): string => (impl === 'ours' ? OUR_SPIPED : C_SPIPED);

/** A temp dir with a key file, both removed after the test. */
function setup(t: ExecutionContext): { dir: string; key: string } {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  return { dir, key: writeKey(dir) };
}

/** An echo server for the test's lifetime. */
async function echo(t: ExecutionContext): Promise<number> {
  const server = await startEchoServer();
  t.teardown(() => closeServer(server.server));
  return server.port;
}

/** Reads the pid a detached daemon wrote (the bare number, as the reference writes it). */
function daemonPid(t: ExecutionContext, pidfile: string): number {
  const text = readFileSync(pidfile, 'utf8');
  t.regex(text, /^[0-9]+$/, 'the pidfile holds the bare pid');
  return Number(text);
}

/** Sends `data` through our spipe to `port`; resolves to what came back. */
async function throughSpipe(t: ExecutionContext, dir: string, port: number, key: string, data: Buffer): Promise<Buffer> {
  const result = await runCli(OUR_SPIPE, ['-t', loopback(port), '-k', key], { dir, stdin: data });
  t.is(result.code, 0, `spipe: ${result.stderr}`);
  t.is(result.stderr, '');
  return result.stdout;
}

/** A raw TCP connection; resolves once connected, with everything it receives collected. */
function rawClient(port: number): Promise<{ socket: Socket; received: () => Buffer; closed: Promise<number> }> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, '127.0.0.1');
    const parts: Buffer[] = [];
    const closed = new Promise<number>((done) => socket.once('close', () => done(Date.now())));
    socket.on('data', (chunk: Buffer) => parts.push(chunk));
    socket.once('error', reject);
    socket.once('connect', () => {
      socket.removeListener('error', reject);
      socket.on('error', () => {});
      resolve({ socket, received: () => Buffer.concat(parts), closed });
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

test('detaches once listening, writes <source>.pid, carries binary data with half-close, ends on SIGTERM', async (t) => {
  const { dir, key } = setup(t);
  const target = await echo(t);
  const ports = await Promise.all(IMPLS.map(() => freePort()));
  for (const [i, impl] of IMPLS.entries()) {
    const source = loopback(ports[i]!);
    killAtTeardown(t, join(dir, `${source}.pid`));
    const run = await runCli(binary(impl), ['-d', '-s', source, '-t', loopback(target), '-k', key], { dir, cwd: dir });
    t.is(run.code, 0, `${impl}: ${run.stderr}`);
    const pid = daemonPid(t, join(dir, `${source}.pid`));
    t.true(isAlive(pid), `${impl}: the daemon runs on after its parent exited`);
    t.deepEqual(procStatus(pid, 'NSsid'), [String(pid)], `${impl}: the daemon leads its own session`);
    t.is(procStatus(pid, 'PPid')[0] === String(process.pid), false);
    const data = randomBytes(1024 * 1024 + 7);
    t.true((await throughSpipe(t, dir, ports[i]!, key, data)).equals(data), `${impl}: 1 MiB came back intact`);
    process.kill(pid, 'SIGTERM');
    t.true(await waitUntil(() => !isAlive(pid), 5000), `${impl}: SIGTERM ended the idle daemon`);
  }
});

test('-k - while detaching: the parent hands the key it read from stdin to the daemon', async (t) => {
  const { dir } = setup(t);
  const target = await echo(t);
  const port = await freePort();
  const keyBytes = randomBytes(48);
  const keyFile = join(dir, 'same-key');
  writeFileSync(keyFile, keyBytes);
  const pidfile = join(dir, 'stdin-key.pid');
  killAtTeardown(t, pidfile);
  const run = await runCli(OUR_SPIPED, ['-d', '-s', loopback(port), '-t', loopback(target), '-k', '-', '-p', pidfile], { dir, stdin: keyBytes });
  t.is(run.code, 0, run.stderr);
  daemonPid(t, pidfile);
  const data = Buffer.from('key from stdin\n');
  t.true((await throughSpipe(t, dir, port, keyFile, data)).equals(data));
  const wrong = await runCli(OUR_SPIPE, ['-t', loopback(port), '-k', writeKey(dir, 'other')], { dir, stdin: data });
  t.is(wrong.code, 1, 'a different key is refused');
  t.is(wrong.stdout.length, 0);
});

test('-F stays in the foreground and writes no pidfile even with -p; SIGTERM exits 0', async (t) => {
  const { dir, key } = setup(t);
  const target = await echo(t);
  for (const impl of IMPLS) {
    const port = await freePort();
    const pidfile = join(dir, `${impl}.pid`);
    const daemon = await startDaemon(impl, ['-d', '-s', loopback(port), '-t', loopback(target), '-k', key, '-p', pidfile], { port });
    t.teardown(() => daemon.stop());
    const exited = new Promise<number | null>((resolve) => daemon.child.once('exit', (code) => resolve(code)));
    await sleep(200);
    t.is(daemon.child.exitCode, null, `${impl}: still running in the foreground`);
    t.false(existsSync(pidfile), `${impl}: no pidfile with -F`);
    const data = randomBytes(5000);
    t.true((await throughSpipe(t, dir, port, key, data)).equals(data));
    daemon.child.kill('SIGTERM');
    t.is(await exited, 0, `${impl}: exit code after SIGTERM`);
    t.is(daemon.stderr(), '');
  }
});

const rootTest = process.getuid?.() === 0 ? test : test.skip;

rootTest('-u nobody, -u :nogroup and -u nobody:nogroup switch identity after binding; an unknown user fails', async (t) => {
  const { dir, key } = setup(t);
  const target = await echo(t);
  const nobody = procStatusOf('nobody');
  for (const [spec, uid, gid] of [
    ['nobody', nobody.uid, '0'],
    [':nogroup', '0', nobody.gid],
    ['nobody:nogroup', nobody.uid, nobody.gid],
  ] as const) {
    const port = await freePort(); // below 1024 would also work: -u comes after binding
    const pidfile = join(dir, `${spec}.pid`);
    killAtTeardown(t, pidfile);
    const run = await runCli(OUR_SPIPED, ['-d', '-s', loopback(port), '-t', loopback(target), '-k', key, '-u', spec, '-p', pidfile], { dir });
    t.is(run.code, 0, run.stderr);
    const pid = daemonPid(t, pidfile);
    t.deepEqual(procStatus(pid, 'Uid'), [uid, uid, uid, uid], `${spec}: uid`);
    t.deepEqual(procStatus(pid, 'Gid'), [gid, gid, gid, gid], `${spec}: gid`);
    t.deepEqual(procStatus(pid, 'Groups'), [], `${spec}: no supplementary groups`);
    const data = Buffer.from(`as ${spec}\n`);
    t.true((await throughSpipe(t, dir, port, key, data)).equals(data));
  }
  const port = await freePort();
  const pidfile = join(dir, 'bad.pid');
  killAtTeardown(t, pidfile);
  const bad = await runCli(OUR_SPIPED, ['-d', '-s', loopback(port), '-t', loopback(target), '-k', key, '-u', 'no-such-user-x', '-p', pidfile], { dir });
  t.deepEqual([bad.code, bad.stderr], [1, 'spiped: No such user: no-such-user-x\nspiped: Failed to drop privileges\n']);
  t.false(existsSync(pidfile), 'the failed daemon removed its pidfile');
  const empty = await runCli(OUR_SPIPED, ['-F', '-d', '-s', loopback(port), '-t', loopback(target), '-k', key, '-u', 'nobody:'], { dir });
  t.deepEqual([empty.code, empty.stderr], [1, 'spiped: Empty group name: "nobody:"\nspiped: Failed to drop privileges\n']);
});

/** nobody's uid and primary gid, from /etc/passwd. */
function procStatusOf(user: string): { uid: string; gid: string } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((entry) => entry.startsWith(`${user}:`));
  const [, , uid = '', gid = ''] = (line ?? '').split(':');
  return { uid, gid };
}

test('SIGTERM with a live connection: keeps serving it, refuses new ones, exits 0 when it closes', async (t) => {
  const { key } = setup(t);
  const target = await echo(t);
  const port = await freePort();
  const daemon = await startDaemon('ours', ['-d', '-s', loopback(port), '-t', loopback(target), '-k', key], { port });
  t.teardown(() => daemon.stop());
  const exited = new Promise<number | null>((resolve) => daemon.child.once('exit', (code) => resolve(code)));
  const stream: SecureStream = await connect({ target: loopback(port), key });
  t.teardown(() => stream.destroy());
  const replies: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => replies.push(chunk));
  stream.write('one;');
  t.true(await waitUntil(() => Buffer.concat(replies).toString() === 'one;'));
  daemon.child.kill('SIGTERM');
  await sleep(300);
  t.is(daemon.child.exitCode, null, 'still running while the connection lives');
  await t.throwsAsync(connect({ target: loopback(port), key, timeout: 2 }), undefined, 'new connections are refused');
  stream.write('two;');
  t.true(await waitUntil(() => Buffer.concat(replies).toString() === 'one;two;'), 'the live connection still carries data');
  t.is(daemon.child.exitCode, null);
  const ended = new Promise<void>((resolve) => stream.once('end', resolve));
  stream.end();
  stream.resume();
  await ended;
  t.is(await exited, 0);
});

test('-n 1: warns "Maximum number of connections (1) reached" and holds the next connection until one closes', async (t) => {
  const { key } = setup(t);
  const target = await echo(t);
  const stderrs: Record<string, string> = {};
  for (const impl of IMPLS) {
    const port = await freePort();
    const daemon = await startDaemon(impl, ['-d', '-s', loopback(port), '-t', loopback(target), '-k', key, '-n', '1', '-o', '30'], { port });
    t.teardown(() => daemon.stop());
    // startDaemon's own probe connection was the first; wait until it is gone.
    await sleep(200);
    const first = await rawClient(port);
    t.teardown(() => first.socket.destroy());
    t.true(await waitUntil(() => first.received().length === 32), `${impl}: the first connection gets the server's nonce`);
    const second = await rawClient(port);
    t.teardown(() => second.socket.destroy());
    await sleep(400);
    t.is(second.received().length, 0, `${impl}: the second connection waits`);
    first.socket.destroy();
    t.true(await waitUntil(() => second.received().length === 32), `${impl}: served once the first closed`);
    stderrs[impl] = daemon.stderr();
  }
  t.true(stderrs['ours']!.includes('spiped: Maximum number of connections (1) reached\n'));
  // Repeats within a second are folded into one line with their count.
  // (A second apart they are written again.)
  t.regex(stderrs['ours']!, /^spiped: Maximum number of connections \(1\) reached\n(spiped: Maximum number of connections \(1\) reached( \(repeated \d+ more times\))?\n)*$/);
  if (stderrs['c'] !== undefined) t.is(stderrs['ours']!.split('\n')[0], stderrs['c'].split('\n')[0]);
});

test('-o 1: a target that never answers the handshake is dropped after about a second', async (t) => {
  const { key } = setup(t);
  const silent = await startSilentServer();
  t.teardown(() => closeServer(silent.server, silent.sockets));
  for (const impl of IMPLS) {
    const [timeout, low, high] = ['1', 950, 4000] as const; // the default (-o 5) would take 5 s
    const port = await freePort();
    const daemon = await startDaemon(impl, ['-e', '-s', loopback(port), '-t', loopback(silent.port), '-k', key, '-o', timeout], { port });
    t.teardown(() => daemon.stop());
    const started = Date.now();
    const client = await rawClient(port);
    t.teardown(() => client.socket.destroy());
    const elapsed = (await client.closed) - started;
    t.true(elapsed >= low && elapsed <= high, `${impl} -o ${timeout}: dropped after ${elapsed} ms`);
    t.is(client.received().length, 0);
  }
});

test('-D detaches before resolving and keeps waiting for DNS', async (t) => {
  const { dir, key } = setup(t);
  for (const impl of IMPLS) {
    const port = await freePort();
    const pidfile = join(dir, `${impl}-D.pid`);
    killAtTeardown(t, pidfile);
    const run = await runCli(binary(impl), ['-D', '-d', '-s', loopback(port), '-t', 'nonexistent.invalid:80', '-k', key, '-p', pidfile], { dir });
    t.is(run.code, 0, `${impl}: ${run.stderr}`);
    t.true(await waitUntil(() => existsSync(pidfile)));
    const pid = daemonPid(t, pidfile);
    await sleep(300);
    t.true(isAlive(pid), `${impl}: still waiting for the name to resolve`);
    process.kill(pid, 'SIGKILL');
  }
});

test('after detaching, warnings go to stderr, or with --syslog to the system log (never crashing without one)', async (t) => {
  const { dir, key } = setup(t);
  const target = await echo(t);
  for (const syslog of [false, true]) {
    const port = await freePort();
    const pidfile = join(dir, `syslog-${syslog}.pid`);
    killAtTeardown(t, pidfile);
    const args = ['-d', '-s', loopback(port), '-t', loopback(target), '-k', key, '-n', '1', '-p', pidfile, ...(syslog ? ['--syslog'] : [])];
    const run = await runCli(OUR_SPIPED, args, { dir });
    t.is(run.code, 0, run.stderr);
    const pid = daemonPid(t, pidfile);
    const client = await rawClient(port);
    t.teardown(() => client.socket.destroy());
    t.true(await waitUntil(() => client.received().length === 32));
    await sleep(200);
    const stderr = readFileSync(run.stderrPath, 'utf8');
    if (syslog) t.is(stderr, '', '--syslog: nothing on stderr');
    else t.is(stderr, 'spiped: Maximum number of connections (1) reached\n');
    t.true(isAlive(pid), 'the daemon survived its warning');
  }
});
