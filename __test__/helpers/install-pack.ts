// Helpers for the install-path test: running npm/npx without the environment of
// an enclosing `npm test`, packing the main package, a platform package and the
// main package's runtime dependencies into tarballs, and seeding a consumer
// project's package-lock.json so that `npm install --offline` needs no registry.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const WINDOWS = process.platform === 'win32';

/**
 * process.env without npm_* / npm_config_* (set by an enclosing `npm test`, they would
 * leak its prefix, cache and user config into the child npm) and without SPIPED_NATIVE*
 * (each test sets the backend knobs it wants), plus `extra`.
 */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (/^npm_/i.test(key) || /^SPIPED_NATIVE/.test(key)) continue;
    env[key] = value;
  }
  return { ...env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false', ...extra };
}

/** Whether `npm --version` runs; the install test is skipped (visibly) only when it does not. */
export function npmRunnable(): boolean {
  const result = spawnSync('npm', ['--version'], { env: cleanEnv(), encoding: 'utf8', shell: WINDOWS, timeout: 30_000 });
  return result.status === 0 && /^\d+\.\d+\.\d+/.test(result.stdout.trim());
}

/** What a finished command did. */
export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `command args` in `cwd`, collecting its output; rejects only on spawn errors or after `timeoutMs`. */
export function run(
  command: string,
  args: readonly string[],
  options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number },
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, [...args], {
      cwd: options.cwd,
      env: options.env ?? cleanEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
      shell: WINDOWS && (command === 'npm' || command === 'npx'),
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timeoutMs = options.timeoutMs ?? 60_000;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${command} ${args.join(' ')} timed out after ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Like run(), but rejects unless the command exits 0. */
export async function runOk(
  command: string,
  args: readonly string[],
  options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number },
): Promise<RunResult> {
  const result = await run(command, args, options);
  if (result.code !== 0) {
    throw new Error(`${command} ${args.join(' ')} (in ${options.cwd}) exited ${result.code ?? result.signal}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`);
  }
  return result;
}

/** One tarball written by `npm pack --json`. */
export interface PackedTarball {
  name: string;
  version: string;
  filename: string;
  integrity: string;
  files: string[];
}

/**
 * `npm pack --ignore-scripts --json` of every directory in `dirs` (one npm process),
 * into `destination`. Scripts are ignored on purpose: the test packs what `npm run build`
 * already produced, and must not start a (recursive) build while ava runs.
 */
export async function packDirs(dirs: readonly string[], destination: string, cwd: string): Promise<PackedTarball[]> {
  mkdirSync(destination, { recursive: true });
  const { stdout } = await runOk('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', destination, ...dirs], {
    cwd,
    timeoutMs: 120_000,
  });
  const parsed = JSON.parse(stdout) as Array<{ name: string; version: string; filename: string; integrity: string; files: Array<{ path: string }> }>;
  if (parsed.length !== dirs.length) throw new Error(`npm pack wrote ${parsed.length} tarballs for ${dirs.length} directories`);
  return parsed.map((p) => ({ name: p.name, version: p.version, filename: p.filename, integrity: p.integrity, files: p.files.map((f) => f.path) }));
}

/** The package.json fields the install test reads. */
export interface Manifest {
  name: string;
  version: string;
  license?: string;
  engines?: Record<string, string>;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

function readManifest(dir: string): Manifest {
  return JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Manifest;
}

/**
 * The installed closure of the repository package's runtime `dependencies`, as
 * node_modules locations relative to `repoRoot` (e.g. 'node_modules/yargs',
 * 'node_modules/cliui/node_modules/string-width'), resolved the way Node resolves
 * them. Throws when a required dependency is not installed (run `npm ci`).
 */
export function runtimeDependencyClosure(repoRoot: string): Map<string, Manifest> {
  const found = new Map<string, Manifest>();
  const resolveFrom = (location: string, name: string): string | null => {
    let base = location;
    for (;;) {
      const candidate = `${base === '' ? '' : `${base}/`}node_modules/${name}`;
      if (existsSync(join(repoRoot, candidate, 'package.json'))) return candidate;
      if (base === '') return null;
      const cut = base.lastIndexOf('/node_modules/');
      base = cut < 0 ? '' : base.slice(0, cut);
    }
  };
  const queue: Array<[string, Manifest]> = [['', readManifest(repoRoot)]];
  while (queue.length > 0) {
    const [location, manifest] = queue.shift()!;
    const optional = new Set(Object.keys(manifest.optionalDependencies ?? {}));
    for (const name of [...Object.keys(manifest.dependencies ?? {}), ...optional]) {
      const at = resolveFrom(location, name);
      if (at === null) {
        if (optional.has(name)) continue;
        throw new Error(`runtime dependency ${name} (of ${manifest.name}) is not installed in ${repoRoot}; run npm ci`);
      }
      if (found.has(at)) continue;
      const dep = readManifest(join(repoRoot, at));
      found.set(at, dep);
      queue.push([at, dep]);
    }
  }
  return found;
}

/**
 * Writes `projectDir`/package.json (an empty private project) and a package-lock.json
 * that pins every runtime dependency location to its local tarball (`file:` relative to
 * `projectDir`) with its integrity, so `npm install --offline <our tarballs>` resolves
 * e.g. yargs@^18 from the lockfile instead of asking a registry for a packument.
 */
export function seedProject(
  projectDir: string,
  deps: ReadonlyMap<string, Manifest>,
  tarballs: ReadonlyMap<string, PackedTarball>,
  tarballDirFromProject: string,
): void {
  mkdirSync(projectDir, { recursive: true });
  const name = 'spiped-native-install-probe';
  writeFileSync(join(projectDir, 'package.json'), `${JSON.stringify({ name, version: '0.0.0', private: true }, null, 2)}\n`);
  const packages: Record<string, unknown> = { '': { name, version: '0.0.0' } };
  for (const [location, manifest] of deps) {
    const tarball = tarballs.get(location);
    if (!tarball) throw new Error(`no tarball for ${location}`);
    packages[location] = {
      version: manifest.version,
      resolved: `file:${tarballDirFromProject}/${tarball.filename}`,
      integrity: tarball.integrity,
      ...(manifest.license ? { license: manifest.license } : {}),
      ...(manifest.dependencies ? { dependencies: manifest.dependencies } : {}),
      ...(manifest.optionalDependencies ? { optionalDependencies: manifest.optionalDependencies } : {}),
      ...(manifest.engines ? { engines: manifest.engines } : {}),
    };
  }
  const lock = { name, version: '0.0.0', lockfileVersion: 3, requires: true, packages };
  writeFileSync(join(projectDir, 'package-lock.json'), `${JSON.stringify(lock, null, 2)}\n`);
}

/** Copies npm/<platform> to `stageDir` and the built addon into it (the repository tree is not touched). */
export function stagePlatformPackage(repoRoot: string, platform: string, addon: string, stageDir: string): void {
  cpSync(join(repoRoot, 'npm', platform), stageDir, { recursive: true });
  cpSync(addon, join(stageDir, `spiped-native.${platform}.node`));
}

/** A daemon started from an installed bin, with its collected stderr. */
export interface InstalledDaemon {
  child: ChildProcess;
  stderr: () => string;
  stop: () => Promise<void>;
}

/** The installed executable for `bin` in `projectDir` (node_modules/.bin/<bin>). */
export function installedBin(projectDir: string, bin: string): { command: string; args: string[] } {
  if (WINDOWS) {
    // .bin/<bin>.cmd needs a shell; run the same script through node instead.
    const manifest = JSON.parse(readFileSync(join(projectDir, 'node_modules', 'spiped-native', 'package.json'), 'utf8')) as {
      bin: Record<string, string>;
    };
    return { command: process.execPath, args: [join(projectDir, 'node_modules', 'spiped-native', manifest.bin[bin]!)] };
  }
  return { command: join(projectDir, 'node_modules', '.bin', bin), args: [] };
}
