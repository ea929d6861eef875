// Owns the backend-selection tests: in child processes, cryptoBackend() reports native
// when the addon is present, node-crypto under SPIPED_NATIVE=0 or when the addon is
// missing, and SPIPED_NATIVE=1 with a missing addon fails loudly at first use.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { cryptoBackend } from 'spiped-native/crypto/index';
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
  info?: { name: string; aesni: boolean; shani: boolean; vaes: boolean; reason?: string };
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
  t.is(typeof info.reason, 'string');
});

test('SPIPED_NATIVE=0 forces node-crypto', (t) => {
  const r = child({ SPIPED_NATIVE: '0' });
  t.is(r.status, 0, r.stderr);
  t.is(r.info?.name, 'node-crypto');
  t.is(r.info?.reason, 'SPIPED_NATIVE=0');
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
  }
});
