// systemd: sockets passed the way systemd passes them (inherited descriptors
// from 3 on, LISTEN_PID set to the daemon's own pid, LISTEN_FDS,
// LISTEN_FDNAMES), picked by `-s systemd:` and `-s systemd:<name>`, served to a
// C spipe; READY=1 and STOPPING=1 received on a Unix datagram NOTIFY_SOCKET (a
// python3 receiver, through systemd-notify); clear errors for what is missing.

import test, { type ExecutionContext } from 'ava';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { OUR_SPIPED, freePort, referenceAvailable, runSpipe, spawnCollecting, startEchoServer, tempDir, writeKey } from './helpers/processes.js';
import { runCli, waitUntil } from './helpers/cli-run.js';

const HAVE_TOOLS = spawnSync('python3', ['--version']).status === 0 && spawnSync('systemd-notify', ['--version']).status === 0;
if (!HAVE_TOOLS && process.env.SPIPED_SYSTEMD === 'required') throw new Error('SPIPED_SYSTEMD=required but python3 or systemd-notify is missing');
const toolTest = HAVE_TOOLS && referenceAvailable() ? test.serial : test.skip;
const loopback = (port: number): string => `[127.0.0.1]:${port}`;

/** A listening TCP socket on a free loopback port and its descriptor, to hand to a child as systemd would. */
async function listeningSocket(): Promise<{ server: Server; port: number; fd: number }> {
  const port = await freePort();
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
  return { server, port, fd };
}

/** A Unix datagram socket at `path` (python3: Node has none) whose datagrams arrive as lines. */
async function notifyReceiver(t: ExecutionContext, path: string): Promise<() => string[]> {
  const script = [
    'import socket, sys',
    's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
    's.bind(sys.argv[1])',
    'print("listening", flush=True)',
    'while True:',
    '    print(s.recv(4096).decode().replace("\\n", " "), flush=True)',
  ].join('\n');
  const child = spawn('python3', ['-c', script, path], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => void child.kill('SIGKILL'));
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  if (!(await waitUntil(() => out.startsWith('listening\n'), 10000))) throw new Error('the python3 receiver did not start');
  return () => out.split('\n').slice(1, -1);
}

/** Starts our spiped with the descriptors `fds` at 3, 4, ... and LISTEN_PID set to its own pid (as systemd does, via exec), plus `env`. */
function startActivated(args: readonly string[], fds: readonly number[], env: Record<string, string>): { child: ChildProcess; stderr: () => string } {
  return spawnCollecting('/bin/sh', ['-c', 'LISTEN_PID=$$ exec "$@"', 'sh', process.execPath, OUR_SPIPED, '-F', ...args], {
    extraFds: fds,
    env: { ...process.env, LISTEN_FDS: String(fds.length), ...env },
  });
}

toolTest('-s systemd:<name> serves the named passed socket to a C spipe; READY=1 and STOPPING=1 reach NOTIFY_SOCKET', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const key = writeKey(dir);
  const echo = await startEchoServer();
  t.teardown(() => echo.server.close());
  const notifyPath = join(dir, 'notify.sock');
  const received = await notifyReceiver(t, notifyPath);
  const [other, web] = [await listeningSocket(), await listeningSocket()];
  const daemon = startActivated(['-d', '-s', 'systemd:web', '-t', loopback(echo.port), '-k', key], [other.fd, web.fd], {
    LISTEN_FDNAMES: 'other:web',
    NOTIFY_SOCKET: notifyPath,
  });
  t.teardown(() => void daemon.child.kill('SIGKILL'));
  other.server.close(); // the daemon holds its own copies now
  web.server.close();
  t.true(await waitUntil(() => received().some((line) => line.includes('READY=1')), 10000), `${received().join('\n')}\n${daemon.stderr()}`);
  t.true(received().some((line) => line.includes(`MAINPID=${daemon.child.pid}`)), received().join('\n'));
  const data = randomBytes(2000);
  const result = await runSpipe('c', ['-t', loopback(web.port), '-k', key], data);
  t.is(result.code, 0, result.stderr);
  t.true(result.stdout.equals(data), 'served on the socket named web');
  const exited = new Promise<number | null>((resolve) => daemon.child.once('exit', (code) => resolve(code)));
  daemon.child.kill('SIGTERM');
  t.is(await exited, 0);
  t.true(await waitUntil(() => received().some((line) => line.includes('STOPPING=1')), 10000), received().join('\n'));
  t.false(existsSync(join(dir, 'systemd:web.pid')), 'no pidfile in the foreground');
});

toolTest('-s systemd: takes the first passed socket; no NOTIFY_SOCKET, no notification', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const key = writeKey(dir);
  const echo = await startEchoServer();
  t.teardown(() => echo.server.close());
  const first = await listeningSocket();
  const env: Record<string, string> = {};
  const daemon = startActivated(['-d', '-s', 'systemd:', '-t', loopback(echo.port), '-k', key], [first.fd], env);
  t.teardown(() => void daemon.child.kill('SIGKILL'));
  first.server.close();
  const result = await runSpipe('c', ['-t', loopback(first.port), '-k', key], Buffer.from('first'));
  t.is(result.stdout.toString(), 'first', result.stderr + daemon.stderr());
  t.is(daemon.stderr(), '');
});

test('systemd: sources are refused clearly when the sockets are missing, not ours, unnamed, or without -F', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const key = writeKey(dir);
  const args = ['-d', '-t', '[127.0.0.1]:1', '-k', key];
  const run = (source: string, env: Record<string, string>, foreground = true) =>
    runCli(OUR_SPIPED, [...(foreground ? ['-F'] : []), '-s', source, ...args], { dir, env: { LISTEN_PID: '', LISTEN_FDS: '', ...env } });
  const none = await run('systemd:', {});
  t.is(none.code, 1);
  t.is(none.stderr, 'spiped: Cannot use socket systemd:: no sockets passed by systemd (LISTEN_PID and LISTEN_FDS are not set)\n');
  const notOurs = await run('systemd:', { LISTEN_PID: '1', LISTEN_FDS: '1' });
  t.is(notOurs.code, 1);
  t.regex(notOurs.stderr, /^spiped: Cannot use socket systemd:: the sockets were passed to process 1, not to this one \(\d+\)\n$/);
  const background = await run('systemd:web', {}, false);
  t.is(background.code, 1);
  t.is(background.stderr, 'spiped: -s systemd:web needs -F (under systemd the daemon stays in the foreground)\n');
});

test('systemd: an unknown name among the passed sockets is named in the error', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const key = writeKey(dir);
  const only = await listeningSocket();
  t.teardown(() => only.server.close());
  const daemon = startActivated(['-d', '-s', 'systemd:db', '-t', '[127.0.0.1]:1', '-k', key], [only.fd], { LISTEN_FDNAMES: 'web' });
  const code = await new Promise<number | null>((resolve) => daemon.child.once('exit', (exitCode) => resolve(exitCode)));
  t.is(code, 1);
  t.is(daemon.stderr(), 'spiped: Cannot use socket systemd:db: no socket named "db" in LISTEN_FDNAMES ("web")\n');
});
