// Owns loading the Rust N-API addon and choosing the live crypto backend: a locally
// built spiped-native.<platform>.node at the package root, else the optional package
// spiped-native-<platform>, else node:crypto. SPIPED_NATIVE=0 forces node:crypto,
// SPIPED_NATIVE=1 makes any failure to get the native backend a thrown error, and
// SPIPED_NATIVE_PATH=<file> loads exactly that .node file instead of searching.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import {
  BadPacketError,
  type CpuFeatures,
  type CryptoBackendInfo,
  type OpenerCore,
  type PacketBackend,
  type SealerCore,
} from './core.js';
import { nodeCryptoBackend } from './node-backend.js';

/** Opaque handle returned by the addon's createSealer/createOpener. */
export type NativeHandle = object & { readonly __spipedNativeHandle?: never };

/** The exact export surface of spiped-native.<platform>.node. */
export interface NativeAddon {
  cpuFeatures(): CpuFeatures;
  createSealer(encKey: Uint8Array, macKey: Uint8Array, firstPacket: bigint): NativeHandle;
  createOpener(encKey: Uint8Array, macKey: Uint8Array, firstPacket: bigint): NativeHandle;
  seal(sealer: NativeHandle, data: Uint8Array): Buffer;
  sealInto(sealer: NativeHandle, data: Uint8Array, out: Uint8Array, outOffset: number): number;
  open(opener: NativeHandle, packets: Uint8Array): Buffer;
  openInto(opener: NativeHandle, packets: Uint8Array, out: Uint8Array, outOffset: number): number;
  nextPacket(sealerOrOpener: NativeHandle): bigint;
}

const ADDON_FUNCTIONS = [
  'cpuFeatures', 'createSealer', 'createOpener', 'seal', 'sealInto', 'open', 'openInto', 'nextPacket',
] as const;

const require = createRequire(import.meta.url);
/** Package root: dist/crypto/native.js -> ../../ */
const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** napi-rs platform triple of this process, e.g. 'linux-x64-gnu', 'darwin-arm64', 'win32-x64-msvc'. */
export function platformName(): string {
  const { platform, arch } = process;
  if (platform === 'linux') return `linux-${arch}-${isMusl() ? 'musl' : 'gnu'}`;
  if (platform === 'win32') return `win32-${arch}-msvc`;
  return `${platform}-${arch}`;
}

function isMusl(): boolean {
  try {
    const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
    return !report?.header?.glibcVersionRuntime;
  } catch {
    return false;
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message.split('\n')[0] ?? e.message : String(e);
}

/** Rethrows a native EBADPACKET as the backend-independent BadPacketError; other errors unchanged. */
function translate(e: unknown): never {
  if (e instanceof Error && (e as NodeJS.ErrnoException).code === 'EBADPACKET' && !(e instanceof BadPacketError)) {
    throw new BadPacketError('packet', undefined, { cause: e });
  }
  throw e;
}

/** SealerCore over the addon's sealer handle. */
class NativeSealerCore implements SealerCore {
  readonly #a: NativeAddon;
  readonly #h: NativeHandle;
  constructor(a: NativeAddon, encKey: Uint8Array, macKey: Uint8Array, firstPacket: bigint) {
    this.#a = a;
    this.#h = a.createSealer(encKey, macKey, firstPacket);
  }
  get nextPacket(): bigint {
    return this.#a.nextPacket(this.#h);
  }
  seal(data: Uint8Array): Buffer {
    return this.#a.seal(this.#h, data);
  }
  sealInto(data: Uint8Array, out: Uint8Array, outOffset: number): number {
    return this.#a.sealInto(this.#h, data, out, outOffset);
  }
}

/** OpenerCore over the addon's opener handle; maps EBADPACKET to BadPacketError and fails for ever. */
class NativeOpenerCore implements OpenerCore {
  readonly #a: NativeAddon;
  readonly #h: NativeHandle;
  #failed = false;
  constructor(a: NativeAddon, encKey: Uint8Array, macKey: Uint8Array, firstPacket: bigint) {
    this.#a = a;
    this.#h = a.createOpener(encKey, macKey, firstPacket);
  }
  get nextPacket(): bigint {
    return this.#a.nextPacket(this.#h);
  }
  open(packets: Uint8Array): Buffer {
    if (this.#failed) throw new BadPacketError('poisoned');
    try {
      return this.#a.open(this.#h, packets);
    } catch (e) {
      if ((e as NodeJS.ErrnoException | null)?.code === 'EBADPACKET') this.#failed = true;
      return translate(e);
    }
  }
  openInto(packets: Uint8Array, out: Uint8Array, outOffset: number): number {
    if (this.#failed) throw new BadPacketError('poisoned');
    try {
      return this.#a.openInto(this.#h, packets, out, outOffset);
    } catch (e) {
      if ((e as NodeJS.ErrnoException | null)?.code === 'EBADPACKET') this.#failed = true;
      return translate(e);
    }
  }
}

/** Wraps a loaded addon as a PacketBackend. */
export function nativeBackendFrom(addon: NativeAddon): PacketBackend {
  return {
    name: 'native',
    createSealer: (e, m, f) => new NativeSealerCore(addon, e, m, f),
    createOpener: (e, m, f) => new NativeOpenerCore(addon, e, m, f),
  };
}

/** A successfully loaded addon and where it came from. */
export interface LoadedAddon {
  addon: NativeAddon;
  from: string;
}

function checkAddon(mod: unknown, from: string): NativeAddon {
  for (const f of ADDON_FUNCTIONS) {
    if (typeof (mod as Record<string, unknown> | null)?.[f] !== 'function') {
      throw new Error(`${from} does not export ${f}()`);
    }
  }
  return mod as NativeAddon;
}

/**
 * Loads the addon (ignoring SPIPED_NATIVE, honouring SPIPED_NATIVE_PATH); throws an
 * Error naming every place tried when none loads. Does not check CPU features.
 */
export function loadNativeAddon(): LoadedAddon {
  const explicit = process.env['SPIPED_NATIVE_PATH'];
  if (explicit) {
    try {
      return { addon: checkAddon(require(explicit), explicit), from: explicit };
    } catch (e) {
      throw new Error(`cannot load native addon from SPIPED_NATIVE_PATH=${explicit}: ${errorText(e)}`, { cause: e });
    }
  }
  const plat = platformName();
  const local = `${PACKAGE_ROOT}spiped-native.${plat}.node`;
  const failures: string[] = [];
  if (existsSync(local)) {
    try {
      return { addon: checkAddon(require(local), local), from: local };
    } catch (e) {
      failures.push(`${local}: ${errorText(e)}`);
    }
  } else {
    failures.push(`${local}: not found`);
  }
  const pkg = `spiped-native-${plat}`;
  try {
    return { addon: checkAddon(require(pkg), pkg), from: require.resolve(pkg) };
  } catch (e) {
    failures.push(`${pkg}: ${errorText(e)}`);
  }
  throw new Error(`no prebuilt addon for ${plat}: ${failures.join('; ')}`);
}

/** The live backend and what cryptoBackend() says about it. */
export interface LiveBackend {
  backend: PacketBackend;
  info: CryptoBackendInfo;
}

let live: LiveBackend | undefined;
let liveError: Error | undefined;

/** Chooses the backend per SPIPED_NATIVE and the CPU (no caching). Throws only under SPIPED_NATIVE=1. */
export function selectBackend(): LiveBackend {
  const mode = process.env['SPIPED_NATIVE'];
  const noCpu = { aesni: false, shani: false, vaes: false };
  if (mode === '0') {
    return { backend: nodeCryptoBackend, info: { name: 'node-crypto', ...noCpu, reason: 'SPIPED_NATIVE=0' } };
  }
  const required = mode === '1';
  let loaded: LoadedAddon;
  try {
    loaded = loadNativeAddon();
  } catch (e) {
    if (required) throw new Error(`SPIPED_NATIVE=1 but the native addon is unavailable: ${errorText(e)}`, { cause: e });
    return { backend: nodeCryptoBackend, info: { name: 'node-crypto', ...noCpu, reason: errorText(e) } };
  }
  let cpu: CpuFeatures;
  try {
    cpu = loaded.addon.cpuFeatures();
  } catch (e) {
    if (required) throw new Error(`SPIPED_NATIVE=1 but cpuFeatures() failed: ${errorText(e)}`, { cause: e });
    return { backend: nodeCryptoBackend, info: { name: 'node-crypto', ...noCpu, reason: `cpuFeatures() failed: ${errorText(e)}` } };
  }
  const flags = { aesni: !!cpu.aesni, shani: !!cpu.shani, vaes: !!cpu.vaes };
  if (!flags.aesni) {
    if (required) throw new Error('SPIPED_NATIVE=1 but the CPU lacks AES-NI');
    return { backend: nodeCryptoBackend, info: { name: 'node-crypto', ...flags, reason: 'CPU lacks AES-NI' } };
  }
  return { backend: nativeBackendFrom(loaded.addon), info: { name: 'native', ...flags, reason: `loaded from ${loaded.from}` } };
}

/** The live backend, chosen once on first use; under SPIPED_NATIVE=1 a failure is rethrown on every call. */
export function liveBackend(): LiveBackend {
  if (live) return live;
  if (liveError) throw liveError;
  try {
    live = selectBackend();
    return live;
  } catch (e) {
    liveError = e instanceof Error ? e : new Error(String(e));
    throw liveError;
  }
}
