import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
// @ts-expect-error: plain JavaScript, without declarations (it runs before any TypeScript can).
import { compiledMain } from '../bin/compiled-cli.mjs';
import { runCli } from './helpers/run-cli.ts';
import { withTempDir } from './helpers/temp-dir.ts';

const compiled = compiledMain as (root: string) => Promise<string | undefined>;

// Written so, the text does not read as this file's own `import.meta` (the suite is compiled as the CLI is).
const META_URL = ['import', 'meta', 'url'].join('.');

/** A source tree in the repository's layout: cli/main.ts, a module it imports, and the files that decide compiling. */
async function writeSources(root: string, greeting: string): Promise<void> {
  await mkdir(join(root, 'cli'), { recursive: true });
  await writeFile(join(root, 'package.json'), '{"type":"module"}');
  await writeFile(join(root, 'tsconfig.json'), '{"compilerOptions":{"target":"ES2022"}}');
  await writeFile(join(root, 'cli', 'main.ts'), "export { main } from './greeting.ts';\n");
  await writeFile(
    join(root, 'cli', 'greeting.ts'),
    `const here: string = ${META_URL};\nexport function main(): string[] { return [${JSON.stringify(greeting)}, here]; }\n`,
  );
}

const run = async (path: string) => ((await import(`${pathToFileURL(path).href}?${Math.random()}`)) as { main: () => string[] }).main();

test('the CLI is compiled once per version of its sources; an edited source makes a new bundle; a module keeps its source file as its URL', async () => {
  await withTempDir('m4-compiled-', async (root) => {
    await writeSources(root, 'hello');
    const first = await compiled(root);
    assert.ok(first);
    assert.ok(first.startsWith(join(root, 'node_modules', '.cache', 'm4data')), first);
    assert.deepEqual(await run(first), ['hello', pathToFileURL(join(root, 'cli', 'greeting.ts')).href]);
    const pointer = join(root, 'node_modules', '.cache', 'm4data', 'current.json');
    assert.deepEqual(JSON.parse(await readFile(pointer, 'utf8')).inputs, ['cli/greeting.ts', 'cli/main.ts']);
    const written = (await stat(pointer)).ino;

    assert.equal(await compiled(root), first, 'unchanged sources: the same bundle');
    assert.equal((await stat(pointer)).ino, written, 'and nothing compiled again (the pointer is replaced by a rename when it is)');

    await writeSources(root, 'hello again');
    const second = await compiled(root);
    assert.notEqual(second, first);
    assert.deepEqual((await run(second!))[0], 'hello again');

    // A source the bundle was made from is gone (another checkout): compiled again from what is there.
    await writeFile(join(root, 'cli', 'main.ts'), "export function main(): string[] { return ['alone']; }\n");
    await rm(join(root, 'cli', 'greeting.ts'));
    const third = await compiled(root);
    assert.deepEqual(await run(third!), ['alone']);
    assert.deepEqual(JSON.parse(await readFile(pointer, 'utf8')).inputs, ['cli/main.ts']);
  });
});

test('the four newest bundles are kept, and what a compile killed midway left is removed once it is old', async () => {
  await withTempDir('m4-compiled-', async (root) => {
    const cache = join(root, 'node_modules', '.cache', 'm4data');
    await mkdir(join(cache, '.staging-1-1'), { recursive: true });
    await mkdir(join(cache, '.staging-2-2'));
    const old = new Date(Date.now() - 3600_000);
    await utimes(join(cache, '.staging-1-1'), old, old);
    const made: string[] = [];
    for (let version = 0; version < 6; version++) {
      await writeSources(root, `version ${version}`);
      made.push(dirname((await compiled(root))!));
    }
    const left = (await readdir(cache)).sort();
    assert.deepEqual(
      left,
      ['.staging-2-2', 'current.json', ...made.slice(-4).map((d) => basename(d))].sort(),
      'a recent staging folder may be a compile in progress',
    );
  });
});

test('a cache that cannot be written leaves the sources to tsx (no bundle, no error)', async () => {
  await withTempDir('m4-compiled-', async (root) => {
    await writeSources(root, 'hello');
    await mkdir(join(root, 'node_modules', '.cache'), { recursive: true });
    await writeFile(join(root, 'node_modules', '.cache', 'm4data'), 'a file where the cache folder would go');
    assert.equal(await compiled(root), undefined);
  });
});

test('compiled and through tsx, the CLI answers alike: help, a usage error, a missing input', async () => {
  const tsx = { env: { ...process.env, M4DATA_NO_COMPILE: '1' } };
  for (const args of [
    ['--help'],
    ['train', '--help'],
    ['mix', '--profile', 'no-such-profile', '--output', '/tmp/m4-never'],
    ['inspect', '/no/such/shard.tar'],
  ]) {
    const [a, b] = await Promise.all([runCli(args), runCli(args, tsx)]);
    assert.deepEqual([a.code, a.out, a.err], [b.code, b.out, b.err], args.join(' '));
  }
});
