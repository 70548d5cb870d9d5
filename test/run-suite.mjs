// `npm test`: the test files compiled as the CLI is (bin/compile.mjs), then run by `node --test`, four files at a time.
//
// Through tsx, each test file's process compiled its modules on the fly, 0.2-1.3 s of CPU a file; bundled once (about
// 0.2 s for all), the suite needs about 20 s less of the 2 cores' CPU. Arguments are passed to `node --test`; test
// files among them (`npm test -- test/tar-sample.test.ts`) choose which run. One file through tsx still works:
// `node --import tsx --test test/tar-sample.test.ts`.
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundle } from '../bin/compile.mjs';

const root = join(fileURLToPath(new URL('.', import.meta.url)), '..');
const args = process.argv.slice(2);
const chosen = args.filter((a) => a.endsWith('.test.ts'));
const files =
  chosen.length > 0
    ? chosen
    : readdirSync(join(root, 'test'))
        .filter((f) => f.endsWith('.test.ts'))
        .map((f) => `test/${f}`);

// One folder per run, so that runs in one checkout (Node 20 and 24 in CI) never share one.
const out = join(root, 'node_modules', '.cache', 'm4data-tests', String(process.pid));
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
let code = 1;
try {
  await bundle(root, files, out, { outExtension: { '.js': '.mjs' }, outbase: join(root, 'test') });
  const compiled = files.map((f) => join(out, basename(f).replace(/\.ts$/, '.mjs')));
  const options = args.filter((a) => !a.endsWith('.test.ts'));
  const child = spawn(process.execPath, ['--enable-source-maps', '--test', '--test-concurrency=4', ...options, ...compiled], { stdio: 'inherit' });
  // Ctrl-C reaches the runner too: it ends, and this process then removes the bundle.
  process.on('SIGINT', () => {});
  code = await new Promise((resolve) => child.on('close', (c, signal) => resolve(c ?? (signal ? 1 : 0))));
} finally {
  rmSync(out, { recursive: true, force: true });
}
process.exitCode = code;
