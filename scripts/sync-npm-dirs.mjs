#!/usr/bin/env node
// Keeps npm/<platform>/package.json in step with the root package.json, the way
// `napi create-npm-dirs` generates them, without regenerating the READMEs:
// name, version, os/cpu/libc, main and files are checked per napi.targets, and the
// fields napi copies from the root (description, keywords, author, homepage,
// license, engines, repository, bugs) are copied over.
//
//   node scripts/sync-npm-dirs.mjs          rewrite what drifted
//   node scripts/sync-npm-dirs.mjs --check  exit 1 and list what drifted
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const check = process.argv.includes('--check');
const root = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
const binaryName = root.napi?.binaryName ?? root.name;

/** Rust triple -> napi-rs platform dir, os, cpu, libc (only the triples this package targets). */
const TRIPLES = {
  'x86_64-unknown-linux-gnu': ['linux-x64-gnu', 'linux', 'x64', 'glibc'],
  'x86_64-unknown-linux-musl': ['linux-x64-musl', 'linux', 'x64', 'musl'],
  'aarch64-unknown-linux-gnu': ['linux-arm64-gnu', 'linux', 'arm64', 'glibc'],
  'aarch64-unknown-linux-musl': ['linux-arm64-musl', 'linux', 'arm64', 'musl'],
  'x86_64-apple-darwin': ['darwin-x64', 'darwin', 'x64', undefined],
  'aarch64-apple-darwin': ['darwin-arm64', 'darwin', 'arm64', undefined],
  'x86_64-pc-windows-msvc': ['win32-x64-msvc', 'win32', 'x64', undefined],
  'aarch64-pc-windows-msvc': ['win32-arm64-msvc', 'win32', 'arm64', undefined],
};
const COPIED = ['description', 'keywords', 'author', 'authors', 'homepage', 'license', 'engines', 'repository', 'bugs'];

const problems = [];
const errors = [];
for (const triple of root.napi?.targets ?? []) {
  const spec = TRIPLES[triple];
  if (!spec) {
    errors.push(`${triple}: not known to this script; add it to TRIPLES`);
    continue;
  }
  const [platform, os, cpu, libc] = spec;
  const file = join(ROOT, 'npm', platform, 'package.json');
  if (!existsSync(file)) {
    errors.push(`npm/${platform}/package.json is missing (npx napi create-npm-dirs)`);
    continue;
  }
  const current = JSON.parse(readFileSync(file, 'utf8'));
  const addon = `${binaryName}.${platform}.node`;
  const want = {
    ...current,
    name: `${root.name}-${platform}`,
    version: root.version,
    cpu: [cpu],
    main: addon,
    files: current.files?.includes(addon) ? current.files : [addon, ...(current.files ?? [])],
    os: [os],
  };
  if (libc) want.libc = [libc];
  else delete want.libc;
  for (const key of COPIED) {
    if (root[key] === undefined) delete want[key];
    else want[key] = root[key];
  }
  for (const key of new Set([...Object.keys(current), ...Object.keys(want)])) {
    if (!isDeepStrictEqual(current[key], want[key])) {
      problems.push(`npm/${platform}/package.json: ${key} is ${JSON.stringify(current[key])}, want ${JSON.stringify(want[key])}`);
    }
  }
  if (!check && !isDeepStrictEqual(current, want)) writeFileSync(file, `${JSON.stringify(want, null, 2)}\n`);
}

for (const p of problems) console.error(`${check ? 'drift' : 'fixed'}: ${p}`);
for (const e of errors) console.error(`error: ${e}`);
if (errors.length > 0 || (check && problems.length > 0)) process.exit(1);
