// Memory stays bounded whatever the reader's speed: 1 GiB pushed through our
// daemon pair toward a reader that stalls and then reads in bursts; both
// daemons' peak RSS must stay under RSS_BOUND_MIB (documented in README).

import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo } from 'node:net';
import { freePort, startDaemon, tempDir, writeKey, type Daemon } from './helpers/processes.js';

/** The documented bound on each daemon's peak resident set during this test. */
export const RSS_BOUND_MIB = 192;
const TOTAL = 1024 * 1024 * 1024;
const BLOCK = randomBytes(1024 * 1024);

/** A process's peak resident set size in MiB (VmHWM). */
function peakRssMiB(pid: number): number {
  const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (match === null) throw new Error(`no VmHWM for ${pid}`);
  return Number(match[1]) / 1024;
}

test('1 GiB toward a slow reader: data intact, daemon RSS bounded', async (t) => {
  t.timeout(120_000);
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const key = writeKey(dir);
  const received = createHash('sha256');
  let receivedBytes = 0;
  let sinkPortReady: (port: number) => void = () => {};
  const sinkPort = new Promise<number>((resolve) => (sinkPortReady = resolve));
  const sinkDone = new Promise<void>((resolve) => {
    const sink = createServer((socket) => {
      socket.pause();
      // Stall 1.5 s so every buffer on the way fills up, then read in 40 ms bursts with 40 ms pauses.
      setTimeout(() => {
        socket.resume();
        const throttle = setInterval(() => (socket.isPaused() ? socket.resume() : socket.pause()), 40);
        socket.on('end', () => {
          clearInterval(throttle);
          sink.close();
          resolve();
        });
      }, 1500);
      socket.on('data', (chunk: Buffer) => {
        received.update(chunk);
        receivedBytes += chunk.length;
      });
    });
    sink.listen(0, '127.0.0.1', () => sinkPortReady((sink.address() as AddressInfo).port));
  });
  const [dPort, ePort] = [await freePort(), await freePort()];
  const daemons: Daemon[] = [];
  t.teardown(() => Promise.all(daemons.map((d) => d.stop())));
  daemons.push(await startDaemon('ours', ['-d', '-s', `[127.0.0.1]:${dPort}`, '-t', `[127.0.0.1]:${await sinkPort}`, '-k', key], { port: dPort }));
  daemons.push(await startDaemon('ours', ['-e', '-s', `[127.0.0.1]:${ePort}`, '-t', `[127.0.0.1]:${dPort}`, '-k', key], { port: ePort }));

  const sent = createHash('sha256');
  const source = connect(ePort, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    source.once('error', reject);
    source.once('connect', resolve);
  });
  for (let written = 0; written < TOTAL; written += BLOCK.length) {
    sent.update(BLOCK);
    if (!source.write(BLOCK)) await new Promise((resolve) => source.once('drain', resolve));
  }
  source.end();
  await sinkDone;
  source.destroy();
  t.is(receivedBytes, TOTAL);
  t.is(received.digest('hex'), sent.digest('hex'));
  for (const daemon of daemons) {
    const peak = peakRssMiB(daemon.child.pid!);
    t.log(`peak RSS of pid ${daemon.child.pid}: ${peak.toFixed(1)} MiB`);
    t.true(peak < RSS_BOUND_MIB, `peak RSS ${peak.toFixed(1)} MiB under ${RSS_BOUND_MIB} MiB`);
  }
});
