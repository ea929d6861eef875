// The pool of DH pairs computed ahead (dh-pool.ts): every pair is a valid
// group-14 pair (y = 2^x mod p, x = 2^258 + 256 bits), none is handed out twice,
// handshakes of a PFS server take their values from it (no modexp for y on the
// event loop), it refills in the background, and once the last lease is given
// back its worker stops and what was left is gone (the process can exit).

import test from 'ava';
import { randomBytes } from 'node:crypto';
import { POOL_SIZE, dhPoolWanted, pooledPairCount, takePooledPair } from 'spiped-native/dh-pool';
import { readdirSync, readFileSync } from 'node:fs';
import { MODP14_PRIME, handshake, preparePfsServer, type HandshakeOptions } from 'spiped-native/handshake';
import { countModexps, modPow, toBigInt } from './helpers/dh.js';
import { socketPair } from './helpers/processes.js';
import { waitUntil } from './helpers/cli-run.js';

// The pool is on by default (dhPoolWanted); these tests make sure of it.
process.env['SPIPED_NATIVE_DH_POOL'] = '1';

const options = (role: 'client' | 'server', key: Buffer): HandshakeOptions => ({ role, key, fast: false, requirePfs: false, timeoutMs: 5000 });

test.serial('before it starts there is no pool; once started it fills with valid, distinct pairs', async (t) => {
  t.is(takePooledPair(), null, 'no pool in a process that never started one (spipe, connect())');
  t.teardown(preparePfsServer());
  t.true(await waitUntil(() => pooledPairCount() === POOL_SIZE, 10000), `filled to ${pooledPairCount()}`);
  const p = toBigInt(MODP14_PRIME);
  const seen = new Set<string>();
  for (let i = 0; i < POOL_SIZE; i++) {
    const pair = takePooledPair();
    if (pair === null || pair.exponent === null) return t.fail('the pool ran dry');
    t.is(pair.y.length, 256);
    t.is(pair.exponent.length, 33);
    t.is(pair.exponent[0], 0x04, 'x = 2^258 + 256 random bits');
    t.is(modPow(2n, toBigInt(pair.exponent), p), toBigInt(pair.y), 'y = 2^x mod p');
    const hex = pair.exponent.toString('hex');
    t.false(seen.has(hex), 'never the same exponent twice');
    seen.add(hex);
    pair.exponent.fill(0);
  }
  t.true(await waitUntil(() => pooledPairCount() === POOL_SIZE, 10000), 'refilled in the background');
});

/** The nice value of each thread of this process, the main thread first (Linux: field 19 of /proc/self/task/<tid>/stat; a thread that exits meanwhile is left out). */
function threadNiceValues(): number[] {
  const tids = readdirSync('/proc/self/task').sort((a, b) => Number(a) - Number(b));
  return tids.flatMap((tid) => {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      return [Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16])];
    } catch {
      return [];
    }
  });
}

test.serial('the worker runs at the lowest CPU priority (nice 19), the event loop at its own', async (t) => {
  if (process.platform !== 'linux') return t.pass('Linux only');
  // The worker of an earlier test may take a moment to exit.
  t.true(await waitUntil(() => !threadNiceValues().includes(19), 10000), 'no thread at nice 19 before the pool starts');
  const before = threadNiceValues();
  t.teardown(preparePfsServer());
  t.true(await waitUntil(() => pooledPairCount() === POOL_SIZE, 10000));
  const after = threadNiceValues();
  t.true(after.includes(19), `a thread at nice 19 once the pool runs (nice values: ${after.join(' ')})`);
  t.is(after[0], before[0], 'the main thread keeps its priority');
});

test.serial('PFS handshakes take their own values from the pool: no modexp for y on the event loop', async (t) => {
  t.teardown(preparePfsServer());
  t.true(await waitUntil(() => pooledPairCount() === POOL_SIZE, 10000));
  const modexps = countModexps(t);
  const key = randomBytes(32);
  const [a, b] = await socketPair();
  const [client, server] = await Promise.all([handshake(a, options('client', key)), handshake(b, options('server', key))]);
  t.is(modexps(), 0, 'both sides took pooled pairs');
  t.true(pooledPairCount() < POOL_SIZE, 'two pairs left the pool');
  const sealed = client.sealer.seal(Buffer.from('pooled'));
  t.is(server.opener.open(sealed).toString(), 'pooled', 'the sides agree on the session keys');
  a.destroy();
  b.destroy();
});

test.serial('the last lease given back stops the worker and drops the pairs left', async (t) => {
  const first = preparePfsServer();
  const second = preparePfsServer();
  t.true(await waitUntil(() => pooledPairCount() === POOL_SIZE, 10000));
  first();
  first(); // idempotent: one lease is still held
  t.is(pooledPairCount(), POOL_SIZE, 'still leased: the pool stays');
  const held = takePooledPair();
  t.not(held, null);
  second();
  t.is(pooledPairCount(), 0, 'no lease left: the pairs are gone');
  t.is(takePooledPair(), null, 'and none is handed out');
  // Serial tests run first and none holds a lease now, so ava can see this process exit (an unref'd, stopped worker).
});

test.serial('on by default; SPIPED_NATIVE_DH_POOL=0 turns it off', async (t) => {
  const before = process.env['SPIPED_NATIVE_DH_POOL'];
  t.teardown(() => void (process.env['SPIPED_NATIVE_DH_POOL'] = before));
  delete process.env['SPIPED_NATIVE_DH_POOL'];
  t.true(dhPoolWanted());
  process.env['SPIPED_NATIVE_DH_POOL'] = '0';
  t.false(dhPoolWanted());
  const release = preparePfsServer();
  await new Promise((resolve) => setTimeout(resolve, 500)); // a started pool fills within about 100 ms
  t.is(pooledPairCount(), 0, 'SPIPED_NATIVE_DH_POOL=0: no pool started');
  release();
  process.env['SPIPED_NATIVE_DH_POOL'] = '1';
  t.true(dhPoolWanted());
});
