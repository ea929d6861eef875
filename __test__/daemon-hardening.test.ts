// The daemon's defences and life cycle, as real processes on loopback: --syslog
// through one long-lived logger(1) with identical warnings coalesced, the crypto
// backend loaded before -u drops privileges, key files hashed as a stream (an
// endless key costs no memory), the detaching parent's bounded wait, the Unix
// source socket removed only while it is ours, and SIGINT as the reference
// handles it (default action; as PID 1, exit at once).

import test, { type ExecutionContext } from 'ava';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer, connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import { cryptoBackend } from 'spiped-native';
import { WarningCoalescer } from 'spiped-native/cli/messages';
import {
  C_SPIPED,
  OUR_SPIPE,
  OUR_SPIPED,
  freePort,
  referenceAvailable,
  startDaemon,
  startEchoServer,
  tempDir,
  waitForListener,
  writeKey,
  type Impl,
} from './helpers/processes.js';
import { closeServer, isAlive, killAtTeardown, killIfAlive, procStatus, runCli, waitUntil } from './helpers/cli-run.js';

const IMPLS: Impl[] = referenceAvailable() ? ['ours', 'c'] : ['ours'];
const loopback = (port: number): string => `[127.0.0.1]:${port}`;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A temp dir with a key file and an echo server, removed after the test. */
async function setup(t: ExecutionContext): Promise<{ dir: string; key: string; target: number }> {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const echo = await startEchoServer();
  t.teardown(() => closeServer(echo.server));
  return { dir, key: writeKey(dir), target: echo.port };
}

/** Opens a raw connection and resolves once the daemon's 32-byte nonce arrived (the connection is being served). */
function servedConnection(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, '127.0.0.1');
    let received = 0;
    socket.on('error', reject);
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received >= 32) resolve(socket);
    });
  });
}

/** Sends `data` through our spipe to `port`; resolves to what came back. */
async function throughSpipe(dir: string, port: number, key: string, data: Buffer): Promise<Buffer> {
  const result = await runCli(OUR_SPIPE, ['-t', loopback(port), '-k', key], { dir, stdin: data });
  if (result.code !== 0) throw new Error(`spipe failed: ${result.stderr}`);
  return result.stdout;
}

test('identical warnings are written once a second with a count of the repeats', (t) => {
  const lines: string[] = [];
  const warnings = new WarningCoalescer((line) => lines.push(line));
  for (let i = 0; i < 50; i++) warnings.report('limit reached');
  warnings.report('other');
  warnings.report('limit reached');
  t.deepEqual(lines, ['limit reached', 'other'], 'the first of each kind at once, repeats held back');
  warnings.flush();
  t.deepEqual(lines, ['limit reached', 'other', 'limit reached (repeated 50 more times)']);
  warnings.report('limit reached');
  t.is(lines.length, 4, 'after a flush the next one is written at once');
  warnings.flush();
  t.is(lines.length, 4, 'nothing repeated, nothing more to say');
});

test('--syslog: one long-lived logger(1) for a burst of warnings, coalesced; a logger that dies is started again', async (t) => {
  const { dir, key, target } = await setup(t);
  // A stand-in logger(1) first in PATH: records its pid and arguments, then each line it reads.
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  const log = join(dir, 'syslog.txt');
  writeFileSync(join(bin, 'logger'), `#!/bin/sh\necho "start $$ $*" >> "${log}"\nwhile IFS= read -r line; do echo "$$ $line" >> "${log}"; done\n`, { mode: 0o755 });
  const port = await freePort();
  const pidfile = join(dir, 'syslog.pid');
  killAtTeardown(t, pidfile);
  const env = { PATH: `${bin}:${process.env['PATH'] ?? ''}` };
  const run = await runCli(OUR_SPIPED, ['-d', '-s', loopback(port), '-t', loopback(target), '-k', key, '-n', '1', '-p', pidfile, '--syslog'], { dir, env });
  t.is(run.code, 0, run.stderr);
  const pid = Number(readFileSync(pidfile, 'utf8'));
  // Each connection served at -n 1 makes the daemon warn: 30 warnings in a burst.
  const burst = 30;
  const burstStarted = Date.now();
  for (let i = 0; i < burst; i++) (await servedConnection(port)).destroy();
  const burstSeconds = (Date.now() - burstStarted) / 1000;
  const entries = (): string[][] => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').map((line) => line.split(' ')) : []);
  const warned = (): number =>
    entries()
      .filter(([first]) => first !== 'start')
      .reduce((sum, entry) => sum + Number(/repeated (\d+) more times/.exec(entry.join(' '))?.[1] ?? 1), 0);
  t.true(await waitUntil(() => warned() === burst, 5000), `every warning accounted for: ${warned()} in ${readFileSync(log, 'utf8')}`);
  const starts = entries().filter(([first]) => first === 'start');
  t.is(starts.length, 1, 'one logger process for the whole burst');
  t.is(starts[0]!.slice(2).join(' '), `-t spiped --id=${pid} -p daemon.warning`);
  const messages = entries().filter(([first]) => first !== 'start').map((entry) => entry.slice(1).join(' '));
  t.is(messages[0], 'Maximum number of connections (1) reached');
  // At most one line a second: the first at once, then one count per second the burst lasted (and the last).
  t.true(messages.length <= 2 + Math.ceil(burstSeconds), `the burst took ${messages.length} lines over ${burstSeconds} s`);
  t.regex(messages.at(-1)!, /^Maximum number of connections \(1\) reached \(repeated \d+ more times\)$/);
  t.true(isAlive(pid), 'the daemon lives on');

  // A logger that dies is replaced at the next warning.
  process.kill(Number(starts[0]![1]), 'SIGKILL');
  await sleep(1500); // its exit is noticed, and the last coalescing window has closed
  (await servedConnection(port)).destroy();
  t.true(await waitUntil(() => entries().filter(([first]) => first === 'start').length === 2, 5000), 'a new logger started');
  const second = entries().filter(([first]) => first === 'start')[1]![1];
  t.true(await waitUntil(() => entries().some(([from, ...rest]) => from === second && rest.join(' ') === 'Maximum number of connections (1) reached')));
  t.is(readFileSync(run.stderrPath, 'utf8'), '', 'nothing on stderr after detaching');
});

const nativeTest = process.getuid?.() === 0 && cryptoBackend().name === 'native' ? test : test.skip;

nativeTest('-u: the native addon is loaded before privileges are dropped (a root-only addon still serves)', async (t) => {
  const { dir, key, target } = await setup(t);
  const backend = cryptoBackend();
  const from = /loaded from (.*)$/.exec(backend.reason ?? '')?.[1];
  if (from === undefined || !from.endsWith('.node')) return t.fail(`cannot tell which addon file is in use: ${backend.reason}`);
  const privateDir = join(dir, 'root-only');
  mkdirSync(privateDir);
  const addon = join(privateDir, 'spiped-native.node');
  copyFileSync(from, addon);
  chmodSync(privateDir, 0o700); // nobody cannot read it
  // SPIPED_NATIVE=1: a native backend that cannot be loaded fails every connection instead of falling back.
  const env = { SPIPED_NATIVE: '1', SPIPED_NATIVE_PATH: addon };
  for (const detached of [false, true]) {
    const port = await freePort();
    const pidfile = join(dir, `u-${detached}.pid`);
    killAtTeardown(t, pidfile);
    const args = ['-d', '-s', loopback(port), '-t', loopback(target), '-k', key, '-u', 'nobody'];
    let stderr: () => string;
    if (detached) {
      const run = await runCli(OUR_SPIPED, [...args, '-p', pidfile], { dir, env });
      t.is(run.code, 0, run.stderr);
      stderr = () => readFileSync(run.stderrPath, 'utf8');
    } else {
      const daemon = await startDaemon('ours', args, { port }, env);
      t.teardown(() => daemon.stop());
      stderr = daemon.stderr;
    }
    const data = Buffer.from(`through a daemon running as nobody (${detached ? 'detached' : '-F'})\n`);
    t.true((await throughSpipe(dir, port, key, data)).equals(data));
    t.is(stderr(), '', 'no fallback notice, no error');
  }
});

/** Peak and current RSS of `pid` in KiB. */
function rssKiB(pid: number): number {
  return Number(procStatus(pid, 'VmRSS')[0]);
}

test('-k /dev/zero and -k - fed without end: the key is hashed as it streams in, in constant memory', async (t) => {
  const { target } = await setup(t);
  const port = await freePort();
  const args = ['-F', '-d', '-s', loopback(port), '-t', loopback(target), '-k'];
  const zeros = spawn('cat', ['/dev/zero'], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.teardown(() => zeros.kill('SIGKILL'));
  const daemons: ChildProcess[] = [
    spawn(process.execPath, [OUR_SPIPED, ...args, '/dev/zero'], { stdio: 'ignore' }),
    spawn(process.execPath, [OUR_SPIPED, ...args, '-'], { stdio: [zeros.stdout, 'ignore', 'ignore'] }),
  ];
  for (const daemon of daemons) t.teardown(() => daemon.kill('SIGKILL'));
  await sleep(1000);
  const before = daemons.map((daemon) => rssKiB(daemon.pid!));
  const readBefore = daemons.map((daemon) => bytesRead(daemon.pid!));
  const peak = [...before];
  for (let i = 0; i < 12; i++) {
    await sleep(250);
    for (const [j, daemon] of daemons.entries()) peak[j] = Math.max(peak[j]!, rssKiB(daemon.pid!));
  }
  for (const [i, daemon] of daemons.entries()) {
    const name = i === 0 ? '-k /dev/zero' : '-k - (a pipe)';
    t.true(isAlive(daemon.pid!), `${name}: still reading its key`);
    const read = bytesRead(daemon.pid!) - readBefore[i]!;
    const grown = peak[i]! - before[i]!;
    t.true(read > 128 * 2 ** 20, `${name}: read ${(read / 2 ** 20).toFixed(0)} MiB of key in 3 s`);
    // Reads of a pipe come as fresh 64 KiB buffers that the GC reclaims in its own time: a sawtooth, not growth.
    t.true(grown < 48 * 1024, `${name}: RSS peaked ${grown} KiB above where it was while it read that`);
  }
});

/** Bytes `pid` has read so far (rchar of /proc/<pid>/io). */
function bytesRead(pid: number): number {
  return Number(/rchar: (\d+)/.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))?.[1]);
}

test('the detaching parent gives up on a daemon that is never ready: kills it and exits 1', async (t) => {
  const { dir, target } = await setup(t);
  const fifo = join(dir, 'key-fifo'); // opening a FIFO with no writer blocks for ever
  execFileSync('mkfifo', [fifo]);
  const port = await freePort();
  const started = Date.now();
  const run = await runCli(OUR_SPIPED, ['-d', '-s', loopback(port), '-t', loopback(target), '-k', fifo, '-p', join(dir, 'never.pid')], {
    dir,
    env: { SPIPED_NATIVE_START_TIMEOUT: '1' },
  });
  const elapsed = Date.now() - started;
  t.deepEqual([run.code, run.stderr], [1, 'spiped: The daemon was not ready within 1 seconds; stopped it\n']);
  t.true(elapsed < 5000, `gave up after ${elapsed} ms`);
  const stillThere = (): boolean => execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).includes(fifo);
  t.true(await waitUntil(() => !stillThere(), 3000), 'the daemon it started is gone');

  // A parent that goes away first (Ctrl-C) takes the not-yet-ready daemon with it.
  const parent = spawn(process.execPath, [OUR_SPIPED, '-d', '-s', loopback(port), '-t', loopback(target), '-k', fifo, '-p', join(dir, 'never2.pid')], {
    stdio: 'ignore',
  });
  t.true(await waitUntil(() => execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split(fifo).length - 1 === 2, 3000), 'parent and child both run');
  parent.kill('SIGINT');
  t.true(await waitUntil(() => !stillThere(), 5000), 'the child exits when its parent is gone before it was ready');
});

test('-k - from a directory on stdin fails as the reference does (no empty key)', async (t) => {
  const { dir, target } = await setup(t);
  const lines: Record<string, string> = {};
  for (const impl of IMPLS) {
    const port = await freePort();
    const command = impl === 'ours' ? [process.execPath, OUR_SPIPED] : [C_SPIPED];
    const child = spawn(command[0]!, [...command.slice(1), '-F', '-d', '-s', loopback(port), '-t', loopback(target), '-k', '-'], {
      stdio: [openSync(dir, 'r'), 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve)); // 'close': stderr read to its end ('exit' can come first)
    t.is(code, 1, `${impl}: exit 1`);
    lines[impl] = stderr;
  }
  t.is(lines['ours'], 'spiped: Error reading from stdin: Is a directory\nspiped: Error reading shared secret\n');
  if (lines['c'] !== undefined) t.is(lines['ours'], lines['c']);
});

/** Resolves once the daemon at Unix socket `path` serves a connection (its nonce arrives): from then on SIGTERM drains rather than ends a start-up. */
function untilServing(path: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const probe = netConnect(path);
    probe.on('error', reject);
    probe.once('data', () => {
      probe.destroy();
      resolve();
    });
  });
}

/** Stops a foreground daemon with SIGTERM and resolves to its exit code. */
async function terminate(child: ChildProcess): Promise<number | null> {
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  return exited;
}

test('a Unix source socket: removed at exit while it is ours, never another process socket at that path', async (t) => {
  const { dir, key, target } = await setup(t);
  const path = join(dir, 'source.sock');
  const args = ['-d', '-s', path, '-t', loopback(target), '-k', key];
  {
    const daemon = await startDaemon('ours', args, { path });
    t.teardown(() => daemon.stop());
    await untilServing(path);
    t.true(statSync(path).isSocket());
    t.deepEqual(readdirSync(dir).filter((name) => name.startsWith('.')), [], 'no temporary name left behind');
    t.is(await terminate(daemon.child), 0);
    t.false(existsSync(path), 'our own socket is removed');
  }
  {
    const daemon = await startDaemon('ours', args, { path });
    t.teardown(() => daemon.stop());
    await untilServing(path);
    // Another instance takes the path over (as a restart with a new daemon would).
    execFileSync('rm', [path]);
    const other = createServer((socket) => socket.end('other\n'));
    await new Promise<void>((resolve) => other.listen(path, resolve));
    t.is(await terminate(daemon.child), 0);
    t.true(existsSync(path), 'the other socket is still there');
    const reply = await new Promise<string>((resolve) => {
      const socket = netConnect(path);
      let text = '';
      socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
      socket.on('close', () => resolve(text));
    });
    t.is(reply, 'other\n', 'and still answers');
    await new Promise((resolve) => other.close(resolve));
  }
  {
    // Our socket moved aside and a symlink to it put in its place: the symlink is not ours to remove.
    const daemon = await startDaemon('ours', args, { path });
    t.teardown(() => daemon.stop());
    await untilServing(path);
    const moved = join(dir, 'moved.sock');
    renameSync(path, moved);
    symlinkSync(moved, path);
    t.is(await terminate(daemon.child), 0);
    t.true(lstatSync(path).isSymbolicLink(), 'the symlink is kept');
    rmSync(path);
  }
  for (const impl of IMPLS) {
    writeFileSync(path, 'a file in the way');
    const binary = impl === 'ours' ? OUR_SPIPED : C_SPIPED;
    const run = await runCli(binary, ['-F', ...args], { dir });
    t.deepEqual([run.code, run.stderr], [1, 'spiped: Error binding socket: Address already in use\n'], `${impl}: a taken path`);
    t.is(readFileSync(path, 'utf8'), 'a file in the way', `${impl}: left alone`);
  }
});

test('SIGINT: the default action in the foreground; as PID 1 (a container) the warning, then exit 0 at once, even with a live connection', async (t) => {
  const { key, target } = await setup(t);
  for (const impl of IMPLS) {
    const port = await freePort();
    const daemon = await startDaemon(impl, ['-d', '-s', loopback(port), '-t', loopback(target), '-k', key], { port });
    t.teardown(() => daemon.stop());
    const live = await servedConnection(port);
    t.teardown(() => live.destroy());
    const exited = new Promise<NodeJS.Signals | null>((resolve) => daemon.child.once('exit', (_, signal) => resolve(signal)));
    daemon.child.kill('SIGINT');
    t.is(await exited, 'SIGINT', `${impl}: killed by SIGINT, not drained`);
  }
  const unshareWorks = (() => {
    try {
      execFileSync('unshare', ['--pid', '--fork', 'true'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();
  if (!unshareWorks) return t.log('unshare --pid is not available: PID 1 half skipped');
  for (const impl of IMPLS) {
    const port = await freePort();
    const command = impl === 'ours' ? [process.execPath, OUR_SPIPED] : [C_SPIPED];
    const init = spawn('unshare', ['--pid', '--fork', ...command, '-F', '-d', '-s', loopback(port), '-t', loopback(target), '-k', key], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    init.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => init.once('exit', (code) => resolve(code)));
    t.teardown(() => killIfAlive(init.pid));
    await waitForListener({ port }, 5000);
    const live = await servedConnection(port);
    const liveClosed = new Promise<void>((resolve) => live.once('close', () => resolve()));
    live.on('error', () => {});
    // The daemon is the child of unshare: PID 1 inside, an ordinary pid here.
    const daemonPid = Number(readFileSync(`/proc/${init.pid}/task/${init.pid}/children`, 'utf8').trim().split(/\s+/)[0]);
    t.is(procStatus(daemonPid, 'NSpid').at(-1), '1', `${impl}: runs as PID 1 in its namespace`);
    const signalled = Date.now();
    process.kill(daemonPid, 'SIGINT');
    t.is(await exited, 0, `${impl}: exit 0 on SIGINT as PID 1`);
    await liveClosed;
    t.true(Date.now() - signalled < 2000, `${impl}: at once, live connection or not`);
    t.is(stderr, 'spiped: WARNING: Applying workaround for Docker signal-handling bug\n');
  }
});
