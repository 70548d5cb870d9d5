#!/usr/bin/env node
// Runs the TypeScript sources, so a fresh clone needs no build step after `npm ci`: compiled once per version of the
// sources (bin/compiled-cli.mjs), or through tsx when that cannot be done or M4DATA_NO_COMPILE is set.
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { compiledMain } from './compiled-cli.mjs';

// A reader that stops early (`m4data train --help | head`) closes the pipe: what is left to print is dropped quietly.
process.stdout.on('error', (err) => {
  if (err.code !== 'EPIPE') throw err;
});

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const compiled = process.env.M4DATA_NO_COMPILE ? undefined : await compiledMain(root);
let main;
if (compiled) {
  // Stack traces (M4DATA_DEBUG) name the TypeScript sources, through the bundle's source maps.
  process.setSourceMapsEnabled(true);
  ({ main } = await import(pathToFileURL(compiled).href));
} else {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import('../cli/main.ts'));
}
process.exitCode = await main(process.argv);
