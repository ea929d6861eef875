// The install path a user gets: `npm pack` the built spiped-native package and the
// platform package for this machine (npm/<platform> plus the locally built
// spiped-native.<platform>.node, staged in a temp dir), install them from those
// tarballs alone into empty projects with `npm install --offline` (runtime
// dependencies such as yargs are packed from this repository's node_modules and
// pinned by a seeded package-lock.json, so no registry and no Rust toolchain is
// involved), then run the installed CLIs: `npx spiped-native doctor` and an
// `spiped -e` / `spiped -d` tunnel on loopback, once with the platform package
// (native backend) and once without it (node:crypto fallback).
//
// Skipped (visibly) only when npm is not runnable. A missing built addon is a
// failure unless SPIPED_TEST_ALLOW_NO_NATIVE=1, as in the other native tests.

import test from 'ava';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { platformName } from 'spiped-native/crypto/native';
import { REPO_ROOT, exchange, freePort, startEchoServer, waitForListener, writeKey } from './helpers/processes.js';
import {
  cleanEnv,
  installedBin,
  npmRunnable,
  packDirs,
  run,
  runOk,
  runtimeDependencyClosure,
  seedProject,
  stagePlatformPackage,
  type InstalledDaemon,
  type Manifest,
  type PackedTarball,
  type RunResult,
} from './helpers/install-pack.js';

const PLATFORM = platformName();
const PLATFORM_PACKAGE = `spiped-native-${PLATFORM}`;
const ADDON_FILE = `spiped-native.${PLATFORM}.node`;
const LOCAL_ADDON = join(REPO_ROOT, ADDON_FILE);
const HAVE_NPM = npmRunnable();
const HAVE_ADDON = existsSync(LOCAL_ADDON);
const ALLOW_NO_NATIVE = process.env['SPIPED_TEST_ALLOW_NO_NATIVE'] === '1';
/**
 * Whether the built addon can run here. It loads on any CPU of its target, but the
 * loader only uses it with AES-NI (x86_64); elsewhere (e.g. arm64) the installed
 * package must say "CPU lacks AES-NI" and fall back, and this test expects exactly that.
 */
const ADDON_USABLE = ((): boolean => {
  if (!HAVE_ADDON) return false;
  try {
    return (createRequire(import.meta.url)(LOCAL_ADDON) as { cpuFeatures(): { aesni?: boolean } }).cpuFeatures().aesni === true;
  } catch {
    return false;
  }
})();

if (!HAVE_NPM) console.warn('install.test: npm is not runnable here; skipping the install-path tests');
const npmTest = HAVE_NPM ? test : test.skip;
const nativeTest = HAVE_NPM && (HAVE_ADDON || !ALLOW_NO_NATIVE) ? test : test.skip;

/** Everything the before() hook packed. */
interface Packed {
  work: string;
  main: PackedTarball;
  platform: PackedTarball | null;
  deps: Map<string, Manifest>;
  depTarballs: Map<string, PackedTarball>;
}

let packed: Promise<Packed> | undefined;
let workDir: string | undefined;

/** Packs once per file: main package, platform package (if the addon is built), runtime deps. */
function packAll(): Promise<Packed> {
  packed ??= (async () => {
    const work = mkdtempSync(join(tmpdir(), 'spiped-install-'));
    workDir = work;
    const tarballs = join(work, 'tarballs');
    const depsDir = join(work, 'deps');
    const deps = runtimeDependencyClosure(REPO_ROOT);
    const locations = [...deps.keys()];

    const dirs = [REPO_ROOT];
    let stage: string | null = null;
    if (HAVE_ADDON) {
      stage = join(work, 'stage', PLATFORM);
      stagePlatformPackage(REPO_ROOT, PLATFORM, LOCAL_ADDON, stage);
      dirs.push(stage);
    }
    const [ours, depTarballList] = await Promise.all([
      packDirs(dirs, tarballs, work),
      locations.length > 0 ? packDirs(locations.map((l) => join(REPO_ROOT, l)), depsDir, work) : Promise.resolve([]),
    ]);
    const depTarballs = new Map(locations.map((l, i) => [l, depTarballList[i]!]));
    return { work, main: ours[0]!, platform: stage === null ? null : ours[1]!, deps, depTarballs };
  })();
  return packed;
}

test.after.always(() => {
  if (workDir !== undefined) rmSync(workDir, { recursive: true, force: true });
});

/** A fresh project in the work dir with the runtime deps pinned, and our tarballs installed offline. */
async function installProject(p: Packed, name: string, withPlatform: boolean): Promise<{ dir: string; install: RunResult }> {
  const dir = join(p.work, name);
  seedProject(dir, p.deps, p.depTarballs, '../deps');
  const tarballs = [join(p.work, 'tarballs', p.main.filename)];
  if (withPlatform) tarballs.push(join(p.work, 'tarballs', p.platform!.filename));
  const install = await runOk(
    'npm',
    [
      'install', '--offline', '--no-audit', '--no-fund',
      // A private, empty cache and a registry that cannot answer: any registry need fails.
      '--cache', join(p.work, `cache-${name}`), '--registry', 'http://127.0.0.1:9/',
      ...tarballs,
    ],
    { cwd: dir, timeoutMs: 120_000 },
  );
  return { dir, install };
}

/** `npx spiped-native doctor` in `dir` (offline, private cache). */
function doctor(p: Packed, dir: string, extraEnv: Record<string, string> = {}): Promise<RunResult> {
  return run('npx', ['--offline', '--cache', join(p.work, 'cache-npx'), '--registry', 'http://127.0.0.1:9/', 'spiped-native', 'doctor'], {
    cwd: dir,
    env: cleanEnv(extraEnv),
  });
}

/** Starts the installed `spiped` in the foreground and waits until it listens on `port`. */
async function startInstalledSpiped(dir: string, args: string[], port: number, env: NodeJS.ProcessEnv): Promise<InstalledDaemon> {
  const bin = installedBin(dir, 'spiped');
  const child = spawn(bin.command, [...bin.args, '-F', ...args], { cwd: dir, env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  };
  try {
    await Promise.race([
      waitForListener({ port }, 15_000),
      exited.then(() => Promise.reject(new Error(`installed spiped ${args.join(' ')} exited early: ${stderr}`))),
    ]);
  } catch (err) {
    await stop();
    throw err;
  }
  return { child, stderr: () => stderr, stop };
}

/** What a tunnel run through the installed spiped pair saw. */
interface TunnelRun {
  sent: Buffer;
  received: Buffer;
  ended: string;
  encStderr: string;
  decStderr: string;
}

/** echo server <- spiped -d <- spiped -e <- client, all from the installed bins; sends `size` random bytes. */
async function runTunnel(dir: string, env: NodeJS.ProcessEnv, size = 300_000): Promise<TunnelRun> {
  const key = writeKey(dir, 'tunnel.key');
  const echo = await startEchoServer();
  const daemons: InstalledDaemon[] = [];
  try {
    const decPort = await freePort();
    const dec = await startInstalledSpiped(dir, ['-d', '-s', `[127.0.0.1]:${decPort}`, '-t', `[127.0.0.1]:${echo.port}`, '-k', key], decPort, env);
    daemons.push(dec);
    const encPort = await freePort();
    const enc = await startInstalledSpiped(dir, ['-e', '-s', `[127.0.0.1]:${encPort}`, '-t', `[127.0.0.1]:${decPort}`, '-k', key], encPort, env);
    daemons.push(enc);
    const sent = randomBytes(size);
    const { received, ended } = await exchange({ port: encPort }, sent, 30_000);
    return { sent, received, ended, encStderr: enc.stderr(), decStderr: dec.stderr() };
  } finally {
    await Promise.all(daemons.map((d) => d.stop()));
    await new Promise<void>((resolve) => echo.server.close(() => resolve()));
  }
}

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Lines of `text` that mention the node:crypto backend. */
const noticeLines = (text: string): string[] => text.split('\n').filter((line) => /node:crypto|node-crypto/.test(line));

nativeTest('the packed tarballs hold what a user needs, and no addon in the main package', async (t) => {
  t.true(HAVE_ADDON, `${LOCAL_ADDON} is not built (npm run build:native); set SPIPED_TEST_ALLOW_NO_NATIVE=1 to skip`);
  const p = await packAll();
  t.is(p.main.name, 'spiped-native');
  for (const file of ['package.json', 'dist/index.js', 'dist/cli/spiped.js', 'dist/cli/spipe.js', 'dist/cli/spiped-native.js', 'dist/crypto/native.js']) {
    t.true(p.main.files.includes(file), `main tarball lacks ${file}`);
  }
  t.deepEqual(p.main.files.filter((f) => f.endsWith('.node')), [], 'the main package must not ship an addon');
  t.not(p.platform, null);
  t.is(p.platform!.name, PLATFORM_PACKAGE);
  t.is(p.platform!.version, p.main.version, 'platform package version must match the main package');
  t.deepEqual(
    p.platform!.files.filter((f) => !/^(README\.md|LICENSE)$/i.test(f)).sort(),
    ['package.json', ADDON_FILE],
  );
});

nativeTest('installed with the platform package: doctor reports the native backend from it, and a tunnel works', async (t) => {
  t.true(HAVE_ADDON, `${LOCAL_ADDON} is not built (npm run build:native); set SPIPED_TEST_ALLOW_NO_NATIVE=1 to skip`);
  const p = await packAll();
  const { dir } = await installProject(p, 'with-platform', true);
  t.true(existsSync(join(dir, 'node_modules', PLATFORM_PACKAGE, ADDON_FILE)));
  t.false(existsSync(join(dir, 'node_modules', 'spiped-native', ADDON_FILE)), 'no addon may sit in the main package root');

  const report = await doctor(p, dir);
  t.is(report.code, 0, report.stdout + report.stderr);
  t.regex(report.stdout, /^spiped-native \d+\.\d+\.\d+\S* \(spiped 1\.6\.\d+ compatible\)$/m);
  t.regex(report.stdout, new RegExp(`^platform: .*\\(addon target ${escape(PLATFORM)}\\)$`, 'm'));
  if (!ADDON_USABLE) {
    // The addon loaded from the platform package, but this CPU has no AES-NI.
    t.log(`${ADDON_FILE} reports no AES-NI on this CPU: expecting the node:crypto fallback`);
    t.regex(report.stdout, /^crypto backend: node-crypto \(CPU lacks AES-NI\)$/m);
    const tunnel = await runTunnel(dir, cleanEnv());
    t.is(tunnel.ended, 'eof');
    t.true(tunnel.received.equals(tunnel.sent), `echoed ${tunnel.received.length} of ${tunnel.sent.length} bytes`);
    return;
  }
  t.regex(
    report.stdout,
    new RegExp(`^crypto backend: native \\(loaded from .*node_modules[\\\\/]${escape(PLATFORM_PACKAGE)}[\\\\/]${escape(ADDON_FILE)}\\)$`, 'm'),
  );
  t.deepEqual(noticeLines(report.stderr), []);

  // SPIPED_NATIVE=1: the daemons would fail rather than fall back, so this tunnel is native.
  const tunnel = await runTunnel(dir, cleanEnv({ SPIPED_NATIVE: '1' }));
  t.is(tunnel.ended, 'eof');
  t.true(tunnel.received.equals(tunnel.sent), `echoed ${tunnel.received.length} of ${tunnel.sent.length} bytes`);
  t.deepEqual(noticeLines(tunnel.encStderr + tunnel.decStderr), [], 'no fallback notice on the native backend');
});

/** The fallback install and what ran there; shared by the two fallback tests. */
let fallback: Promise<{ report: RunResult; required: RunResult; tunnel: TunnelRun }> | undefined;
function fallbackRun(): Promise<{ report: RunResult; required: RunResult; tunnel: TunnelRun }> {
  fallback ??= (async () => {
    const p = await packAll();
    const { dir } = await installProject(p, 'without-platform', false);
    const report = await doctor(p, dir);
    const required = await doctor(p, dir, { SPIPED_NATIVE: '1' });
    const tunnel = await runTunnel(dir, cleanEnv());
    return { report, required, tunnel };
  })();
  return fallback;
}

npmTest('installed without the platform package: doctor reports node:crypto and why, and a tunnel works', async (t) => {
  const { report, required, tunnel } = await fallbackRun();
  t.is(report.code, 0, report.stdout + report.stderr);
  t.regex(
    report.stdout,
    new RegExp(`^crypto backend: node-crypto \\(no prebuilt addon for ${escape(PLATFORM)}: .*${escape(PLATFORM_PACKAGE)}.*\\)$`, 'm'),
  );
  t.regex(report.stdout, /^backend CPU features: aesni=no shani=no vaes=no$/m);
  // Under SPIPED_NATIVE=1 the missing addon is an error, not a silent fallback.
  t.is(required.code, 1, required.stdout + required.stderr);
  t.regex(required.stdout, /^crypto backend: unavailable \(SPIPED_NATIVE=1 but the native addon is unavailable: /m);

  t.is(tunnel.ended, 'eof');
  t.true(tunnel.received.equals(tunnel.sent), `echoed ${tunnel.received.length} of ${tunnel.sent.length} bytes`);
});

npmTest('installed without the platform package: each spiped prints exactly one node:crypto notice line', async (t) => {
  const { tunnel } = await fallbackRun();
  for (const [which, stderr] of [['-e', tunnel.encStderr], ['-d', tunnel.decStderr]] as const) {
    const lines = noticeLines(stderr);
    t.is(lines.length, 1, `spiped ${which} stderr:\n${stderr}`);
    t.regex(lines[0] ?? '', /^spiped: notice: .*node:crypto/, `spiped ${which} stderr:\n${stderr}`);
  }
});
