// Owns the "run this test with every crypto backend" helper for the crypto*.test.ts
// files: the node:crypto core always, the native addon core when it loads. A missing
// addon makes the native variants fail, unless SPIPED_TEST_ALLOW_NO_NATIVE=1 (skip).
import test, { type ExecutionContext } from 'ava';
import { nodeCryptoBackend } from 'spiped-native/crypto/node-backend';
import { loadNativeAddon, nativeBackendFrom, type NativeAddon } from 'spiped-native/crypto/native';
import type { PacketBackend } from 'spiped-native/crypto/index';

/** The native backend and its raw addon (SPIPED_NATIVE ignored), or why it is unavailable. */
export const native: { backend?: PacketBackend; addon?: NativeAddon; from?: string; error?: string } = (() => {
  try {
    const { addon, from } = loadNativeAddon();
    return { backend: nativeBackendFrom(addon), addon, from };
  } catch (e) {
    return { error: e instanceof Error ? e.message : String(e) };
  }
})();

/** Every backend name with its backend, if available. */
export const BACKENDS: ReadonlyArray<{ name: 'native' | 'node-crypto'; backend?: PacketBackend }> = [
  { name: 'node-crypto', backend: nodeCryptoBackend },
  native.backend ? { name: 'native', backend: native.backend } : { name: 'native' },
];

const allowNoNative = process.env['SPIPED_TEST_ALLOW_NO_NATIVE'] === '1';

/** Registers `[backend] title` once per backend. */
export function backendTest(title: string, fn: (t: ExecutionContext, backend: PacketBackend) => void | Promise<void>): void {
  for (const { name, backend } of BACKENDS) {
    const full = `[${name}] ${title}`;
    if (backend) test(full, (t) => fn(t, backend));
    else if (allowNoNative) test.skip(full, () => {});
    else test(full, (t) => t.fail(`native addon unavailable (${native.error}); build it or set SPIPED_TEST_ALLOW_NO_NATIVE=1`));
  }
}
