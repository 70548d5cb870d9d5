#!/usr/bin/env node
// Runs the TypeScript sources directly (tsx), so a fresh clone needs no compile step after `npm ci`.
import { register } from 'tsx/esm/api';

// A reader that stops early (`m4data train --help | head`) closes the pipe: what is left to print is dropped quietly.
process.stdout.on('error', (err) => {
  if (err.code !== 'EPIPE') throw err;
});

register();
const { main } = await import('../cli/main.ts');
process.exitCode = await main(process.argv);
