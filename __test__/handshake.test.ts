// The handshake stage against the recorded reference sessions: dk_1 and the
// HMACs over y in both files, y validation (range, -g), dk_2 and the packet
// keys of the -f session, shared-value agreement including the degenerate DH
// values, and whole handshakes over loopback sockets in both roles.

import test from 'ava';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import {
  DH_ONE,
  MODP14_PRIME,
  authenticateDhValue,
  computeSharedValue,
  createDhContribution,
  createPacketCoders,
  deriveDhmacKeys,
  deriveSessionKeys,
  handshake,
  verifyDhMessage,
  type HandshakeOptions,
} from 'spiped-native/handshake';
import { SpipedError } from 'spiped-native';
import { loadFastSession, loadVector } from './helpers/vectors.js';
import { socketPair } from './helpers/processes.js';
import { countModexps, modPow } from './helpers/dh.js';

const errorCode = (err: unknown): string | undefined => (err instanceof SpipedError ? err.code : undefined);

test('fast session: our dk_1 authenticates both recorded y || h, and y = 1 both ways', (t) => {
  const session = loadFastSession();
  const { dhmacC, dhmacS } = deriveDhmacKeys(session.K, session.nonceC, session.nonceS);
  t.true(verifyDhMessage(dhmacC, session.yhC, false).equals(DH_ONE));
  t.true(verifyDhMessage(dhmacS, session.yhS, false).equals(DH_ONE));
  t.true(authenticateDhValue(dhmacC, DH_ONE).equals(session.yhC), 'we produce the same y || h for -f');
  // -g refuses the peer's y = 1.
  t.is(errorCode(t.throws(() => verifyDhMessage(dhmacC, session.yhC, true))), 'EHANDSHAKE');
});

test('fast session: dk_2 keys open what each side sent, in each role', (t) => {
  const session = loadFastSession();
  const ySC = computeSharedValue(createDhContribution(true), DH_ONE);
  t.true(ySC.equals(DH_ONE));
  const keys = () => deriveSessionKeys(session.K, session.nonceC, session.nonceS, ySC);
  const server = createPacketCoders('server', keys());
  const client = createPacketCoders('client', keys());
  t.true(server.opener.open(session.packetsC2S).equals(session.plaintextC2S));
  t.true(client.opener.open(session.packetsS2C).equals(session.plaintextS2C));
});

test('PFS handshake: both HMACs check out, y is in range and not 1; tampering is refused', (t) => {
  const vector = loadVector('spiped-1.6.2-pfs-handshake.json');
  const K = createHash('sha256').update(Buffer.from(String(vector.keyfile_hex), 'hex')).digest();
  const c2s = Buffer.from(String(vector.client_to_server_handshake_hex), 'hex');
  const s2c = Buffer.from(String(vector.server_to_client_handshake_hex), 'hex');
  const { dhmacC, dhmacS } = deriveDhmacKeys(K, c2s.subarray(0, 32), s2c.subarray(0, 32));
  const yC = verifyDhMessage(dhmacC, c2s.subarray(32, 320), true);
  const yS = verifyDhMessage(dhmacS, s2c.subarray(32, 320), true);
  t.false(yC.equals(DH_ONE));
  t.true(Buffer.compare(yS, MODP14_PRIME) < 0);
  for (const position of [0, 100, 255, 256, 287]) {
    const damaged = Buffer.from(c2s.subarray(32, 320));
    damaged[position]! ^= 0x01;
    t.is(errorCode(t.throws(() => verifyDhMessage(dhmacC, damaged, false))), 'EHANDSHAKE', `bit flip at ${position}`);
  }
  // The roles' MAC keys are not interchangeable.
  t.throws(() => verifyDhMessage(dhmacS, c2s.subarray(32, 320), false));
});

test('y >= p is refused even with a valid HMAC', (t) => {
  const dhmac = randomBytes(32);
  t.is(errorCode(t.throws(() => verifyDhMessage(dhmac, authenticateDhValue(dhmac, MODP14_PRIME), false))), 'EHANDSHAKE');
  const max = Buffer.alloc(256, 0xff);
  t.throws(() => verifyDhMessage(dhmac, authenticateDhValue(dhmac, max), false));
  const below = Buffer.from(MODP14_PRIME);
  below[255]! -= 2;
  t.true(verifyDhMessage(dhmac, authenticateDhValue(dhmac, below), false).equals(below));
});

test('shared values agree, and degenerate peer values give the mathematically right answer', (t) => {
  const a = createDhContribution(false);
  const b = createDhContribution(false);
  t.is(a.y.length, 256);
  t.is(a.exponent!.length, 33);
  t.is(a.exponent![0], 0x04, 'x = 2^258 + 256 random bits');
  // One DiffieHellman object serves the whole process: each y must come from its own exponent.
  const p = BigInt(`0x${MODP14_PRIME.toString('hex')}`);
  for (const own of [a, b]) t.is(BigInt(`0x${own.y.toString('hex')}`), modPow(2n, BigInt(`0x${own.exponent!.toString('hex')}`), p));
  t.true(computeSharedValue(a, b.y).equals(computeSharedValue(b, a.y)));
  t.is(BigInt(`0x${computeSharedValue(b, a.y).toString('hex')}`), modPow(BigInt(`0x${a.y.toString('hex')}`), BigInt(`0x${b.exponent!.toString('hex')}`), p));
  t.true(computeSharedValue(a, DH_ONE).equals(DH_ONE), 'a -f peer gives y_SC = 1');
  t.true(computeSharedValue(a, Buffer.alloc(256)).equals(Buffer.alloc(256)), '0^x = 0');
  const pMinusOne = Buffer.from(MODP14_PRIME);
  pMinusOne[255]! -= 1;
  const odd = a.exponent![32]! & 1;
  t.true(computeSharedValue(a, pMinusOne).equals(odd ? pMinusOne : DH_ONE), '(p-1)^x = ±1 by parity of x');
});


const options = (role: 'client' | 'server', key: Buffer, extra: Partial<HandshakeOptions> = {}): HandshakeOptions => ({
  role,
  key,
  fast: false,
  requirePfs: false,
  timeoutMs: 5000,
  ...extra,
});

for (const [label, clientExtra, serverExtra] of [
  ['PFS', {}, {}],
  ['-f both', { fast: true }, { fast: true }],
  ['-f client, PFS server', { fast: true }, {}],
] as const) {
  test(`handshake over loopback (${label}): each side opens what the other sealed; extra bytes stay queued`, async (t) => {
    const [clientSocket, serverSocket] = await socketPair();
    t.teardown(() => {
      clientSocket.destroy();
      serverSocket.destroy();
    });
    const key = randomBytes(32);
    const [client, server] = await Promise.all([
      handshake(clientSocket, options('client', key, clientExtra)),
      handshake(serverSocket, options('server', key, serverExtra)),
    ]);
    const hello = randomBytes(3000);
    t.true(server.opener.open(client.sealer.seal(hello)).equals(hello));
    t.true(client.opener.open(server.sealer.seal(hello)).equals(hello));
    // Bytes the client sends right behind its handshake are left for the packet pipe.
    clientSocket.write(client.sealer.seal(Buffer.from('behind')));
    const queued = await new Promise<Buffer>((resolve) => serverSocket.once('data', resolve).resume());
    t.is(server.opener.open(queued).toString(), 'behind');
  });
}

test('handshake failures: wrong key, -g against -f, silence (timeout) and an early close', async (t) => {
  {
    const [a, b] = await socketPair();
    const client = handshake(a, options('client', randomBytes(32)));
    const server = handshake(b, options('server', randomBytes(32)));
    t.is(errorCode(await server.catch((err: unknown) => err)), 'EHANDSHAKE', 'the server refuses a client with another key');
    b.destroy();
    t.is(errorCode(await client.catch((err: unknown) => err)), 'EHANDSHAKE', 'and the client sees the connection dropped');
    a.destroy();
    b.destroy();
  }
  {
    const [a, b] = await socketPair();
    const key = randomBytes(32);
    const server = handshake(b, options('server', key, { requirePfs: true }));
    void handshake(a, options('client', key, { fast: true })).catch(() => {});
    t.is(errorCode(await server.catch((err: unknown) => err)), 'EHANDSHAKE');
    a.destroy();
    b.destroy();
  }
  {
    const [a, b] = await socketPair();
    const started = Date.now();
    t.is(errorCode(await handshake(a, options('client', randomBytes(32), { timeoutMs: 300 })).catch((err: unknown) => err)), 'ETIMEOUT');
    t.true(Date.now() - started < 2000);
    a.destroy();
    b.destroy();
  }
  {
    const [a, b] = await socketPair();
    b.end(randomBytes(10));
    t.is(errorCode(await handshake(a, options('client', randomBytes(32))).catch((err: unknown) => err)), 'EHANDSHAKE');
    a.destroy();
  }
});

// Serial: ava runs serial tests before the concurrent ones, so no other handshake adds to the count.
test.serial('the server computes its DH value only once the client proved the key: junk and a wrong key cost it no modexp', async (t) => {
  const modexps = countModexps(t);
  const key = randomBytes(32);
  const raw = async (bytes: Buffer): Promise<{ error: unknown; sent: number }> => {
    const [client, serverSide] = await socketPair();
    let sent = 0;
    client.on('data', (chunk: Buffer) => (sent += chunk.length));
    const server = handshake(serverSide, options('server', key));
    client.write(bytes);
    const error = await server.catch((err: unknown) => err);
    await new Promise((resolve) => setTimeout(resolve, 20)); // anything the server wrote has arrived
    client.destroy();
    serverSide.destroy();
    return { error, sent };
  };
  for (const junk of [randomBytes(32 + 288), randomBytes(400)]) {
    const { error, sent } = await raw(junk);
    t.is(errorCode(error), 'EHANDSHAKE');
    t.is(sent, 32, 'the server sent its nonce and nothing more');
  }
  {
    const [a, b] = await socketPair();
    const server = handshake(b, options('server', randomBytes(32)));
    const client = handshake(a, options('client', key));
    t.is(errorCode(await server.catch((err: unknown) => err)), 'EHANDSHAKE', 'a client with another key is refused');
    a.destroy();
    b.destroy();
    await client.catch(() => {});
  }
  t.is(modexps(), 1, 'only the wrong-key client computed a DH value; the server computed none');
  const [a, b] = await socketPair();
  await Promise.all([handshake(a, options('client', key)), handshake(b, options('server', key))]);
  t.is(modexps(), 3, 'a client with the key gets the server to compute its value');
  a.destroy();
  b.destroy();
});

test('HMAC check is over y only, with the side-specific key', (t) => {
  const dhmac = randomBytes(32);
  const y = createDhContribution(false).y;
  const message = authenticateDhValue(dhmac, y);
  t.true(message.subarray(256).equals(createHmac('sha256', dhmac).update(y).digest()));
});
