// Owns loading the Rust N-API addon and choosing the live crypto backend: a locally
// built spiped-native.<platform>.node at the package root, else the .node file of this
// package's own dependency spiped-native-<platform>, else node:crypto. Only `.node`
// files are ever loaded (process.dlopen, never require of a JS module), and only an
// addon whose version() equals this package's version is used. SPIPED_NATIVE=0 forces
// node:crypto, SPIPED_NATIVE=1 makes any failure to get the native backend a thrown
// error (an AggregateError with each attempt's cause), and SPIPED_NATIVE_PATH=<file.node>
// loads exactly that file instead of searching. The addon runs on any CPU: its own
// hand-written x86_64 kernels where they apply, else its portable core.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BadPacketError,
  type CpuFeatures,
  type CryptoBackendInfo,
  type NativeKernels,
  type OpenerCore,
  type PacketBackend,
  type SealerCore,
} from './core.js';
import { nodeCryptoBackend } from './node-backend.js';
import type * as GeneratedAddon from './addon.js';

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
  dispose(sealerOrOpener: NativeHandle): void;
  version(): string;
  kernels(): NativeKernels;
  pbkdf2Sha256(key: Uint8Array, salt: Uint8Array, length: number): Buffer;
  hmacSha256(key: Uint8Array, data: Uint8Array): Buffer;
}

/** Compile-time check that napi build's generated declarations (addon.d.ts) satisfy NativeAddon. */
const generatedSatisfiesNativeAddon = (generated: typeof GeneratedAddon): NativeAddon => generated;
void generatedSatisfiesNativeAddon;

const ADDON_FUNCTIONS = [
  'cpuFeatures', 'createSealer', 'createOpener', 'seal', 'sealInto', 'open', 'openInto', 'nextPacket', 'dispose', 'version', 'kernels',
  'pbkdf2Sha256', 'hmacSha256',
] as const;

/** Package root: dist/crypto/native.js -> ../../ */
const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PACKAGE_JSON = join(PACKAGE_ROOT, 'package.json');
/** Resolves modules as this package itself would (its own node_modules, then its ancestors'). */
const packageRequire = createRequire(PACKAGE_JSON);

/** This package's version, from its package.json ('unknown' if unreadable). */
export function packageVersion(): string {
  try {
    const version: unknown = (JSON.parse(readFileSync(PACKAGE_JSON, 'utf8')) as { version?: unknown }).version;
    return typeof version === 'string' ? version : 'unknown';
  } catch {
    return 'unknown';
  }
}

/** napi-rs platform triple of this process, e.g. 'linux-x64-gnu', 'darwin-arm64', 'win32-x64-msvc'. */
export function platformName(): string {
  const { platform, arch } = process;
  if (platform === 'linux') return `linux-${arch}-${isMusl() ? 'musl' : 'gnu'}`;
  if (platform === 'win32') return `win32-${arch}-msvc`;
  return `${platform}-${arch}`;
}

let muslCached: boolean | undefined;

/** Whether this Linux process runs on musl: /usr/bin/ldd's text first, then process.report (network excluded). */
export function isMusl(): boolean {
  muslCached ??= muslFromLdd() ?? muslFromReport() ?? false;
  return muslCached;
}

/** true/false from /usr/bin/ldd (a script on glibc, musl's loader on musl); undefined if unreadable. */
function muslFromLdd(): boolean | undefined {
  try {
    return readFileSync('/usr/bin/ldd', 'latin1').includes('musl');
  } catch {
    return undefined;
  }
}

/** true/false from the diagnostic report's glibc version and loaded objects; undefined if unavailable. */
function muslFromReport(): boolean | undefined {
  // excludeNetwork exists since Node 20.13 / 22.0; @types/node 20 does not declare it.
  const report = process.report as (NodeJS.ProcessReport & { excludeNetwork?: boolean }) | undefined;
  if (!report || typeof report.getReport !== 'function') return undefined;
  const previous = report.excludeNetwork;
  try {
    // Without this, getReport() does reverse DNS lookups of every open socket (slow, may hang).
    report.excludeNetwork = true;
    const r = report.getReport() as { header?: { glibcVersionRuntime?: string }; sharedObjects?: unknown };
    if (r.header?.glibcVersionRuntime) return false;
    const objects = Array.isArray(r.sharedObjects) ? (r.sharedObjects as unknown[]) : [];
    return objects.some((o) => typeof o === 'string' && (o.includes('libc.musl-') || o.includes('ld-musl-')));
  } catch {
    return undefined;
  } finally {
    report.excludeNetwork = previous ?? false;
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
  dispose(): void {
    this.#a.dispose(this.#h);
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
  dispose(): void {
    this.#a.dispose(this.#h);
  }
}

/** Wraps a loaded addon as a PacketBackend. */
export function nativeBackendFrom(addon: NativeAddon): PacketBackend {
  return {
    name: 'native',
    createSealer: (e, m, f) => new NativeSealerCore(addon, e, m, f),
    createOpener: (e, m, f) => new NativeOpenerCore(addon, e, m, f),
    pbkdf2Sha256: (key, salt, length) => addon.pbkdf2Sha256(key, salt, length),
    hmacSha256: (key, data) => addon.hmacSha256(key, data),
  };
}

/** A successfully loaded addon and where it came from. */
export interface LoadedAddon {
  addon: NativeAddon;
  from: string;
}

/** Exports of .node files already opened, by absolute path (dlopen once per process). */
const opened = new Map<string, unknown>();

/** Opens a Node-API addon file; refuses anything whose name does not end in `.node`. */
function dlopenAddon(file: string): unknown {
  if (!file.endsWith('.node')) throw new Error('not a .node file');
  const path = resolve(file);
  if (opened.has(path)) return opened.get(path);
  const mod: { exports: unknown } = { exports: {} };
  process.dlopen(mod, path);
  opened.set(path, mod.exports);
  return mod.exports;
}

/** Returns `mod` as a NativeAddon if it exports every function and its version() equals this package's; else throws naming `from`. */
export function checkAddon(mod: unknown, from: string): NativeAddon {
  for (const f of ADDON_FUNCTIONS) {
    if (typeof (mod as Record<string, unknown> | null)?.[f] !== 'function') {
      throw new Error(`${from} does not export ${f}()`);
    }
  }
  const addon = mod as NativeAddon;
  const theirs = addon.version();
  const ours = packageVersion();
  if (theirs !== ours) throw new Error(`${from} is version ${String(theirs)}, this package is ${ours}`);
  return addon;
}

/** The .node file of the platform package `pkg`, resolved from this package's location. */
function platformPackageFile(pkg: string, plat: string): string {
  const manifest = packageRequire.resolve(`${pkg}/package.json`);
  const dir = dirname(manifest);
  const main: unknown = (JSON.parse(readFileSync(manifest, 'utf8')) as { main?: unknown }).main;
  const file = typeof main === 'string' && main.endsWith('.node') ? join(dir, main) : join(dir, `spiped-native.${plat}.node`);
  const inside = relative(dir, file);
  if (inside.startsWith('..') || isAbsolute(inside)) throw new Error(`${manifest} names a file outside its package`);
  return file;
}

/** One attempt's failure: the place tried, and why. */
function attemptError(place: string, e: unknown): Error {
  return new Error(`${place}: ${errorText(e)}`, { cause: e });
}

/**
 * Loads the addon (ignoring SPIPED_NATIVE, honouring SPIPED_NATIVE_PATH); throws an
 * AggregateError holding each attempt's Error when none loads. Does not check CPU features.
 */
export function loadNativeAddon(): LoadedAddon {
  const explicit = process.env['SPIPED_NATIVE_PATH'];
  if (explicit) {
    try {
      if (!explicit.endsWith('.node')) throw new Error('SPIPED_NATIVE_PATH must name a .node file');
      return { addon: checkAddon(dlopenAddon(explicit), explicit), from: explicit };
    } catch (e) {
      const err = attemptError(explicit, e);
      throw new AggregateError([err], `cannot load native addon from SPIPED_NATIVE_PATH=${explicit}: ${errorText(e)}`);
    }
  }
  const plat = platformName();
  const failures: Error[] = [];
  const local = `${PACKAGE_ROOT}spiped-native.${plat}.node`;
  if (existsSync(local)) {
    try {
      return { addon: checkAddon(dlopenAddon(local), local), from: local };
    } catch (e) {
      failures.push(attemptError(local, e));
    }
  } else {
    failures.push(new Error(`${local}: not found`));
  }
  const pkg = `spiped-native-${plat}`;
  try {
    const file = platformPackageFile(pkg, plat);
    return { addon: checkAddon(dlopenAddon(file), file), from: file };
  } catch (e) {
    failures.push(attemptError(pkg, e));
  }
  throw new AggregateError(failures, `no prebuilt addon for ${plat}: ${failures.map((f) => f.message).join('; ')}`);
}

/** The live backend and what cryptoBackend() says about it. */
export interface LiveBackend {
  backend: PacketBackend;
  info: CryptoBackendInfo;
}

let live: LiveBackend | undefined;
let liveError: Error | undefined;

/** Chooses the backend per SPIPED_NATIVE (no caching): the addon on whatever kernels it chose, else node:crypto. Throws only under SPIPED_NATIVE=1. */
export function selectBackend(): LiveBackend {
  const mode = process.env['SPIPED_NATIVE'];
  const noCpu = { aesni: false, shani: false, vaes: false, kernels: null };
  if (mode === '0') {
    return { backend: nodeCryptoBackend, info: { name: 'node-crypto', ...noCpu, reason: 'SPIPED_NATIVE=0' } };
  }
  const required = mode === '1';
  let loaded: LoadedAddon;
  try {
    loaded = loadNativeAddon();
  } catch (e) {
    if (required) {
      const attempts = e instanceof AggregateError ? (e.errors as unknown[]) : [e];
      throw new AggregateError(attempts, `SPIPED_NATIVE=1 but the native addon is unavailable: ${errorText(e)}`, { cause: e });
    }
    return { backend: nodeCryptoBackend, info: { name: 'node-crypto', ...noCpu, reason: errorText(e) } };
  }
  let info: CryptoBackendInfo;
  try {
    const cpu = loaded.addon.cpuFeatures();
    const kernels = loaded.addon.kernels();
    info = { name: 'native', aesni: !!cpu.aesni, shani: !!cpu.shani, vaes: !!cpu.vaes, kernels, reason: `loaded from ${loaded.from}` };
  } catch (e) {
    if (required) throw new Error(`SPIPED_NATIVE=1 but the addon's self-description failed: ${errorText(e)}`, { cause: e });
    return { backend: nodeCryptoBackend, info: { name: 'node-crypto', ...noCpu, reason: `addon self-description failed: ${errorText(e)}` } };
  }
  return { backend: nativeBackendFrom(loaded.addon), info };
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
