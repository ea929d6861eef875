// Owns the backend-selection tests: in child processes, cryptoBackend() reports native
// when the addon is present, node-crypto under SPIPED_NATIVE=0 or when the addon is
// missing, and SPIPED_NATIVE=1 with a missing addon fails loudly at first use; the
// loader opens only .node files of the right version, from the package or its own
// platform package, and never runs a JS module in their place.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { cryptoBackend } from 'spiped-native/crypto/index';
import { checkAddon, packageVersion, platformName } from 'spiped-native/crypto/native';
import { native } from './helpers/crypto-backends.js';

const INDEX_URL = import.meta.resolve('spiped-native/crypto/index');

/** Child script: print cryptoBackend() and prove the live backend round-trips. */
const CHILD = `
import { cryptoBackend, PacketSealer, PacketOpener } from ${JSON.stringify(INDEX_URL)};
const k = new Uint8Array(32).fill(7);
const info = cryptoBackend();
const sealed = new PacketSealer(k, k).seal(new TextEncoder().encode('hello'));
const ok = new TextDecoder().decode(new PacketOpener(k, k).open(sealed)) === 'hello';
console.log(JSON.stringify({ info, ok }));
`;

interface ChildResult {
  status: number | null;
  stderr: string;
  info?: { name: string; aesni: boolean; shani: boolean; vaes: boolean; kernels: string | null; reason?: string };
  ok?: boolean;
}

function child(env: Record<string, string | undefined>): ChildResult {
  const e: NodeJS.ProcessEnv = { ...process.env };
  delete e['SPIPED_NATIVE'];
  delete e['SPIPED_NATIVE_PATH'];
  for (const [k, v] of Object.entries(env)) if (v !== undefined) e[k] = v;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', CHILD], { env: e, encoding: 'utf8', timeout: 60_000 });
  const out: ChildResult = { status: r.status, stderr: r.stderr };
  if (r.status === 0) Object.assign(out, JSON.parse(r.stdout.trim()) as object);
  return out;
}

const needNative = native.backend || process.env['SPIPED_TEST_ALLOW_NO_NATIVE'] !== '1' ? test : test.skip;

test('in-process cryptoBackend() has the documented shape', (t) => {
  const info = cryptoBackend();
  t.true(info.name === 'native' || info.name === 'node-crypto');
  for (const k of ['aesni', 'shani', 'vaes'] as const) t.is(typeof info[k], 'boolean');
  t.true(info.name === 'native' ? info.kernels === 'x86_64' || info.kernels === 'portable' : info.kernels === null);
  t.is(typeof info.reason, 'string');
});

test('SPIPED_NATIVE=0 forces node-crypto', (t) => {
  const r = child({ SPIPED_NATIVE: '0' });
  t.is(r.status, 0, r.stderr);
  t.is(r.info?.name, 'node-crypto');
  t.is(r.info?.reason, 'SPIPED_NATIVE=0');
  t.is(r.info?.kernels, null);
  t.true(r.ok);
});

test('a missing addon (SPIPED_NATIVE_PATH to nowhere) falls back to node-crypto with a reason', (t) => {
  const r = child({ SPIPED_NATIVE_PATH: '/nonexistent/spiped-native.node' });
  t.is(r.status, 0, r.stderr);
  t.is(r.info?.name, 'node-crypto');
  t.regex(r.info?.reason ?? '', /\/nonexistent\/spiped-native\.node/);
  t.true(r.ok);
});

test('SPIPED_NATIVE=1 with the addon missing fails loudly', (t) => {
  const r = child({ SPIPED_NATIVE: '1', SPIPED_NATIVE_PATH: '/nonexistent/spiped-native.node' });
  t.not(r.status, 0);
  t.regex(r.stderr, /SPIPED_NATIVE=1 but the native addon is unavailable/);
});

needNative('with the addon present: native by default and under SPIPED_NATIVE=1', (t) => {
  if (!native.backend) {
    t.fail(`native addon unavailable: ${native.error}`);
    return;
  }
  for (const env of [{}, { SPIPED_NATIVE: '1' }, { SPIPED_NATIVE: '1', SPIPED_NATIVE_PATH: native.from }]) {
    const r = child(env);
    t.is(r.status, 0, r.stderr);
    t.is(r.info?.name, 'native', JSON.stringify(env));
    t.true(r.info?.aesni);
    t.regex(r.info?.reason ?? '', /^loaded from /);
    t.true(r.ok);
    if (process.env['SPIPED_NATIVE_KERNELS'] !== 'portable') {
      t.is(r.info?.kernels, r.info?.aesni && r.info.shani ? 'x86_64' : 'portable', 'x86_64 kernels wherever AES-NI and SHA-NI exist');
    }
  }
  // SPIPED_NATIVE_KERNELS=portable: still the native backend, on the portable core.
  const p = child({ SPIPED_NATIVE_KERNELS: 'portable' });
  t.is(p.status, 0, p.stderr);
  t.is(p.info?.name, 'native');
  t.is(p.info?.kernels, 'portable');
  t.true(p.ok);
});

/** Child script: print cryptoBackend() or, when it throws, the error's name, message and per-attempt messages. */
const CHILD_INFO = (indexUrl: string): string => `
import { cryptoBackend } from ${JSON.stringify(indexUrl)};
try {
  console.log(JSON.stringify({ info: cryptoBackend(), ran: globalThis.__impostorRan === true }));
} catch (e) {
  console.log(JSON.stringify({ name: e.name, message: e.message, errors: (e.errors ?? []).map((x) => x.message), ran: globalThis.__impostorRan === true }));
}
`;

interface InfoResult {
  info?: { name: string; reason?: string };
  name?: string;
  message?: string;
  errors?: string[];
  ran: boolean;
}

function childInfo(env: Record<string, string>, indexUrl = INDEX_URL): InfoResult {
  const e: NodeJS.ProcessEnv = { ...process.env };
  delete e['SPIPED_NATIVE'];
  delete e['SPIPED_NATIVE_PATH'];
  Object.assign(e, env);
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', CHILD_INFO(indexUrl)], { env: e, encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`child failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim()) as InfoResult;
}

/** A JS file that would mark itself as run (and export a plausible addon) if anything executed it. */
const IMPOSTOR = `globalThis.__impostorRan = true; module.exports = new Proxy({}, { get: () => () => ({ aesni: true, shani: true, vaes: true, avx2: true }) });\n`;

test('SPIPED_NATIVE_PATH must name a .node file; a JS module is never executed, whatever its name', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'spiped-loader-'));
  try {
    const js = join(dir, 'addon.cjs');
    const disguised = join(dir, 'addon.node');
    writeFileSync(js, IMPOSTOR);
    writeFileSync(disguised, IMPOSTOR);
    const a = childInfo({ SPIPED_NATIVE_PATH: js });
    t.is(a.info?.name, 'node-crypto');
    t.regex(a.info?.reason ?? '', /must name a \.node file/);
    t.false(a.ran);
    const b = childInfo({ SPIPED_NATIVE_PATH: disguised });
    t.is(b.info?.name, 'node-crypto');
    t.false(b.ran, 'a JS file named .node is not run as JS');
    const c = childInfo({ SPIPED_NATIVE_PATH: js, SPIPED_NATIVE: '1' });
    t.is(c.name, 'AggregateError');
    t.regex(c.message ?? '', /SPIPED_NATIVE=1 but the native addon is unavailable/);
    t.is(c.errors?.length, 1);
    t.regex(c.errors?.[0] ?? '', /addon\.cjs: SPIPED_NATIVE_PATH must name a \.node file/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an addon whose version() differs from package.json is refused', (t) => {
  const fake = Object.fromEntries(
    ['cpuFeatures', 'createSealer', 'createOpener', 'seal', 'sealInto', 'open', 'openInto', 'nextPacket', 'dispose', 'kernels', 'pbkdf2Sha256', 'hmacSha256'].map((f) => [f, () => undefined]),
  );
  const ours = packageVersion();
  t.throws(() => checkAddon({ ...fake, version: () => '0.0.0-other' }, 'fake.node'), { message: `fake.node is version 0.0.0-other, this package is ${ours}` });
  t.throws(() => checkAddon(fake, 'fake.node'), { message: 'fake.node does not export version()' });
  t.notThrows(() => checkAddon({ ...fake, version: () => ours }, 'fake.node'));
});

needNative('the platform package is resolved from the package itself and only its .node file is loaded', (t) => {
  if (!native.from) {
    t.fail(`native addon unavailable: ${native.error}`);
    return;
  }
  // <dir>/pkg is a copy of this package without a local addon; <dir>/node_modules is an
  // ancestor's node_modules holding a JS impostor of the platform package.
  const dir = mkdtempSync(join(tmpdir(), 'spiped-loader-'));
  try {
    const root = fileURLToPath(new URL('../../', import.meta.url));
    const pkg = join(dir, 'pkg');
    mkdirSync(pkg);
    cpSync(join(root, 'dist'), join(pkg, 'dist'), { recursive: true });
    cpSync(join(root, 'package.json'), join(pkg, 'package.json'));
    const plat = platformName();
    const url = pathToFileURL(join(pkg, 'dist/crypto/index.js')).href;
    // Nothing to load: under SPIPED_NATIVE=1 one AggregateError names both attempts.
    const none = childInfo({ SPIPED_NATIVE: '1' }, url);
    t.is(none.name, 'AggregateError');
    t.is(none.errors?.length, 2);
    t.regex(none.errors?.[0] ?? '', new RegExp(`spiped-native\\.${plat}\\.node: not found$`));
    t.regex(none.errors?.[1] ?? '', new RegExp(`^spiped-native-${plat}: `));
    const platDir = join(dir, 'node_modules', `spiped-native-${plat}`);
    mkdirSync(platDir, { recursive: true });
    writeFileSync(join(platDir, 'package.json'), JSON.stringify({ name: `spiped-native-${plat}`, version: packageVersion(), main: 'index.js' }));
    writeFileSync(join(platDir, 'index.js'), IMPOSTOR);
    const a = childInfo({}, url);
    t.is(a.info?.name, 'node-crypto');
    t.false(a.ran, 'the JS main of the platform package is never required');
    t.regex(a.info?.reason ?? '', new RegExp(`spiped-native-${plat}: .*spiped-native\\.${plat}\\.node`));
    // With the known file name present, that .node file is what loads.
    cpSync(native.from, join(platDir, `spiped-native.${plat}.node`));
    const b = childInfo({}, url);
    t.is(b.info?.name, 'native');
    t.is(b.info?.reason, `loaded from ${join(platDir, `spiped-native.${plat}.node`)}`);
    t.false(b.ran);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
