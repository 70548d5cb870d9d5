// The CLI compiled once per version of its sources, so that a command does not compile its modules on the fly.
//
// tsx compiles each module as it is imported, through a loader thread that every import waits on: about 0.3 s of CPU
// at each start of `m4data build` and 0.5 s of `m4data train` (`--help` 0.45 s against 0.2). Here esbuild (the compiler
// tsx itself uses, with the same tsconfig) bundles cli/main.ts once, a chunk per lazily loaded command, into
// node_modules/.cache/m4data/<hash>/, the hash being that of every source file the bundle was made from (esbuild's
// own list of them). A later start hashes those files again and runs the bundle when nothing changed; an edited file
// makes a new bundle. How it is bundled: bin/compile.mjs.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundle } from './compile.mjs';

/** Bundles kept: older ones are removed when a new one is made (a process still running an old one has loaded it). */
const KEEP = 4;
const STALE_MS = 10 * 60_000;
/** The bundling itself: a change to it makes new bundles too. */
const COMPILER = fileURLToPath(new URL('./compile.mjs', import.meta.url));

/**
 * The path of the compiled CLI's main module for the sources under `root`, compiled now when they changed; undefined
 * when it cannot be (esbuild missing, the cache not writable): the caller then runs the sources through tsx.
 */
export async function compiledMain(root) {
  const cache = join(root, 'node_modules', '.cache', 'm4data');
  const current = readCurrent(cache);
  if (current && isUpToDate(root, cache, current)) return join(cache, current.hash, 'main.js');
  try {
    return await compile(root, cache);
  } catch {
    return undefined;
  }
}

/** sha256 over the sources' paths and bytes, with what decides how they compile: package.json, tsconfig.json, compile.mjs. */
function sourceHash(root, inputs) {
  const hash = createHash('sha256');
  for (const file of [...inputs, 'package.json', 'tsconfig.json']) {
    hash.update(`${file}\0`);
    hash.update(readFileSync(join(root, file)));
  }
  hash.update(readFileSync(COMPILER));
  return hash.digest('hex').slice(0, 24);
}

/** The bundle `current` names is there and was made from the sources as they are (one of them may be gone). */
function isUpToDate(root, cache, current) {
  try {
    return current.hash === sourceHash(root, current.inputs) && existsSync(join(cache, current.hash, 'main.js'));
  } catch {
    return false;
  }
}

function readCurrent(cache) {
  try {
    const current = JSON.parse(readFileSync(join(cache, 'current.json'), 'utf8'));
    return typeof current.hash === 'string' && Array.isArray(current.inputs) ? current : undefined;
  } catch {
    return undefined;
  }
}

async function compile(root, cache) {
  const staging = join(cache, `.staging-${process.pid}-${Date.now()}`);
  mkdirSync(staging, { recursive: true });
  try {
    const result = await bundle(root, { main: 'cli/main.ts' }, staging);
    const inputs = Object.keys(result.metafile.inputs)
      .map((file) => relative(root, join(root, file)))
      .sort();
    const hash = sourceHash(root, inputs);
    const target = join(cache, hash);
    try {
      renameSync(staging, target);
    } catch (err) {
      // Another process made the same bundle first: use it.
      if (!existsSync(join(target, 'main.js'))) throw err;
    }
    const pointer = join(cache, `.current-${process.pid}.json`);
    writeFileSync(pointer, JSON.stringify({ hash, inputs }));
    renameSync(pointer, join(cache, 'current.json'));
    prune(cache, hash);
    return join(target, 'main.js');
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

/** Keeps the KEEP newest bundles, and removes what a compile killed midway left (after STALE_MS, so none in progress). */
function prune(cache, keep) {
  const entries = readdirSync(cache, { withFileTypes: true });
  for (const entry of entries.filter((e) => e.name.startsWith('.staging-') || e.name.startsWith('.current-'))) {
    const path = join(cache, entry.name);
    // Another process may remove it first: then it has no mtime here, and nothing is left to do.
    if (Date.now() - (statSync(path, { throwIfNoEntry: false })?.mtimeMs ?? Date.now()) > STALE_MS) rmSync(path, { recursive: true, force: true });
  }
  const bundles = entries
    .filter((entry) => entry.isDirectory() && /^[0-9a-f]{24}$/.test(entry.name) && entry.name !== keep)
    .map((entry) => ({ name: entry.name, mtime: statSync(join(cache, entry.name), { throwIfNoEntry: false })?.mtimeMs ?? 0 }))
    .sort((a, b) => b.mtime - a.mtime);
  for (const old of bundles.slice(KEEP - 1)) rmSync(join(cache, old.name), { recursive: true, force: true });
}
