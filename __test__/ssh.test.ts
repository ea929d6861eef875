// spipe as an ssh ProxyCommand, end to end: a real sshd on loopback behind our
// `spiped -d`, and OpenSSH's client reaching it through `spipe` (our bin and
// `spiped-native spipe`). Needs /usr/sbin/sshd and /usr/bin/ssh; CI installs
// them and sets SPIPED_SSH=required so that their absence fails, not skips.

import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, OUR_SPIPE, REPO_ROOT, startDaemon, tempDir, waitForListener, writeKey } from './helpers/processes.js';

const SSHD = '/usr/sbin/sshd';
const SSH = '/usr/bin/ssh';
const haveSsh = existsSync(SSHD) && existsSync(SSH) && typeof process.getuid === 'function' && process.getuid() === 0;
if (!haveSsh && process.env.SPIPED_SSH === 'required') {
  throw new Error('SPIPED_SSH=required but sshd/ssh are missing or not root (apt-get install -y openssh-server)');
}
const sshTest = haveSsh ? test : test.skip;

/** Runs ssh with `args`; resolves to its stdout, stderr and exit code. */
function runSsh(args: string[]): Promise<{ stdout: string; stderr: string; code: number | null }> {
  const child = spawn(SSH, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve) => child.on('close', (code) => resolve({ stdout, stderr, code })));
}

sshTest('ssh reaches a real sshd through spiped -d with spipe as its ProxyCommand', async (t) => {
  t.timeout(60_000);
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  mkdirSync('/run/sshd', { recursive: true }); // sshd's privilege-separation directory
  for (const name of ['host_key', 'client_key']) {
    const made = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, name)]);
    t.is(made.status, 0, made.stderr.toString());
  }
  const sshPort = await freePort();
  const config = join(dir, 'sshd_config');
  writeFileSync(
    config,
    [
      `Port ${sshPort}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${join(dir, 'host_key')}`,
      `AuthorizedKeysFile ${join(dir, 'client_key.pub')}`,
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'StrictModes no',
      'UsePAM no',
      `PidFile ${join(dir, 'sshd.pid')}`,
    ].join('\n') + '\n',
  );
  const sshd = spawn(SSHD, ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let sshdLog = '';
  sshd.stderr.on('data', (chunk: Buffer) => (sshdLog += chunk.toString()));
  t.teardown(() => void sshd.kill('SIGKILL'));
  await waitForListener({ port: sshPort });

  const key = writeKey(dir, 'spiped_key');
  const spipedPort = await freePort();
  const daemon = await startDaemon('ours', ['-d', '-s', `[127.0.0.1]:${spipedPort}`, '-t', `[127.0.0.1]:${sshPort}`, '-k', key], { port: spipedPort });
  t.teardown(() => daemon.stop());

  const proxies = [
    `${process.execPath} ${OUR_SPIPE} -t %h:${spipedPort} -k ${key}`,
    `${process.execPath} ${join(REPO_ROOT, 'dist/cli/spiped-native.js')} spipe -t [%h]:${spipedPort} -k ${key}`,
  ];
  for (const proxy of proxies) {
    const result = await runSsh([
      '-F', '/dev/null',
      '-o', `ProxyCommand=${proxy}`,
      '-o', 'StrictHostKeyChecking=no',
      '-o', 'UserKnownHostsFile=/dev/null',
      '-o', 'BatchMode=yes',
      '-o', 'LogLevel=ERROR',
      '-i', join(dir, 'client_key'),
      'root@127.0.0.1',
      'echo through-spiped; head -c 200000 /dev/zero | sha256sum',
    ]);
    t.is(result.code, 0, `${proxy}\n${result.stderr}\nsshd: ${sshdLog}`);
    t.regex(result.stdout, /^through-spiped\n/);
    t.true(result.stdout.includes('4cbbd9be0cba685835755f827758705db5a413c5494c34262cd25946a73e7582'), 'a 200 kB reply came through intact');
  }
});
