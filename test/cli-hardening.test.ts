import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startImageServer, writeLaionParquet } from './helpers/pair-build.ts';
import { runCli } from './helpers/run-cli.ts';
import { ustarHeader } from '../shards/ustar.ts';
import { asM4Error } from '../core/errors.ts';

// Regression tests for issue 10's data loss, hangs and misleading messages, each through the CLI as a user meets it.

const server = await startImageServer();
const dir = await mkdtemp(join(tmpdir(), 'm4-harden-'));
test.after(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

const input = join(dir, 'laion.parquet');
await writeLaionParquet(input, server, [
  { path: '/f/good0.jpg', status: 'success' },
  { path: '/f/good1.jpg', status: 'success' },
]);
const LOOPBACK = ['--allow-private-network', '127.0.0.1/32'];

/** Every error line is `m4data: message [E_CODE]`. */
function assertErrorLine(stderr: string, code: string, message: RegExp): void {
  const line = stderr.split('\n').find((l) => l.startsWith('m4data: '));
  assert.ok(line, `no error line in ${JSON.stringify(stderr)}`);
  assert.match(line, new RegExp(` \\[${code}\\]$`), line);
  assert.match(line, message, line);
}

test('demo --out refuses a non-empty folder it did not make, and leaves the user file alone (exit 2)', async () => {
  const out = join(dir, 'mine');
  await mkdir(out);
  await writeFile(join(out, 'thesis.txt'), 'years of work');
  const r = await runCli(['demo', '--out', out]);
  assert.equal(r.code, 2, r.err);
  assertErrorLine(r.err, 'E_USAGE', /not empty and was not made by the demo/);
  assert.equal(await readFile(join(out, 'thesis.txt'), 'utf8'), 'years of work');
});

test('demo --out empties a folder an earlier demo made (its marker is there), and runs the whole mission: the loss falls', async () => {
  const out = join(dir, 'earlier-demo');
  await mkdir(out);
  await writeFile(join(out, '.m4data-demo'), '');
  await writeFile(join(out, 'stale.txt'), 'from the earlier demo');
  const r = await runCli(['demo', '--out', out], { timeoutMs: 300_000 });
  assert.equal(r.code, 0, r.err);
  await assert.rejects(stat(join(out, 'stale.txt')), /ENOENT/);
  await stat(join(out, '.m4data-demo'));
  await stat(join(out, 'laion', 'manifest.json'));
  // npm start's closing table: every source built, mixed and trained on, and the loss of the first and last step.
  for (const source of ['pmd', 'laion', 'obelisc', 'wikipedia'])
    assert.match(r.out, new RegExp(`^${source} +\\d+ +\\d+ +\\d+ +[\\d.]+% +[\\d.]+% +[\\d.]+% +[\\d.]+%$`, 'm'));
  const first = Number(/^first step \(1\) {2}loss (\d+\.\d+)$/m.exec(r.out)?.[1]);
  const last = Number(/^last step \(\d+\) {2}loss (\d+\.\d+)$/m.exec(r.out)?.[1]);
  assert.ok(last < first - 1, `the loss fell from ${first} to ${last}`);
  await stat(join(out, 'run', 'loss.svg'));
});

test('--output under /proc fails fast with a message instead of spinning in mkdir', async () => {
  const r = await runCli(['build', '--source', 'laion', '--input', input, '--output', '/proc/m4data-test/out', ...LOOPBACK], { timeoutMs: 60_000 });
  assert.equal(r.killed, false, 'the build hung');
  assert.equal(r.code, 2, r.err);
  assertErrorLine(r.err, 'E_USAGE', /\/proc\/m4data-test\/out: \/proc is on the kernel's proc file system/);
  const demo = await runCli(['demo', '--out', '/proc/m4data-test/demo'], { timeoutMs: 60_000 });
  assert.equal(demo.killed, false, 'the demo hung');
  assert.equal(demo.code, 2, demo.err);
});

test('an --output that is an existing file, or lies under one, is said to be a file', async () => {
  const file = join(dir, 'a-file');
  await writeFile(file, 'x');
  const r = await runCli(['build', '--source', 'laion', '--input', input, '--output', file, ...LOOPBACK]);
  assert.equal(r.code, 2, r.err);
  assertErrorLine(r.err, 'E_USAGE', /a-file: is an existing file, not a folder/);
  const under = await runCli(['build', '--source', 'laion', '--input', input, '--output', join(file, 'out'), ...LOOPBACK]);
  assert.equal(under.code, 2, under.err);
  assertErrorLine(under.err, 'E_USAGE', /a-file is a file, not a folder/);
  assert.equal(await readFile(file, 'utf8'), 'x');
});

test('an --output on a read-only file system is reported as EROFS', async (t) => {
  const ro = join(dir, 'read-only');
  await mkdir(ro);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', ro], { stdio: 'ignore' });
  } catch {
    t.skip('cannot mount a read-only file system here (needs root)');
    return;
  }
  t.after(() => execFileSync('umount', [ro]));
  const r = await runCli(['build', '--source', 'laion', '--input', input, '--output', join(ro, 'out'), ...LOOPBACK]);
  assert.equal(r.code, 2, r.err);
  assertErrorLine(r.err, 'E_USAGE', /read-only file system \(EROFS\)/);
});

test('a file-system error m4data did not raise keeps its errno in the message and gets a code', () => {
  const erofs = Object.assign(new Error("EROFS: read-only file system, open '/ro/out/x.tar'"), { code: 'EROFS' });
  const error = asM4Error(erofs);
  assert.equal(error.code, 'E_STORAGE');
  assert.match(error.message, /^EROFS: read-only file system/);
  assert.equal(asM4Error(new TypeError('x is undefined')).code, 'E_INTERNAL');
});

test('a run that fails before building leaves no build.json to block the next run', async () => {
  const output = join(dir, 'blocked');
  const notParquet = join(dir, 'rows.parquet');
  await writeFile(notParquet, 'URL,TEXT\nhttp://x/a.jpg,a cat\n');
  const bad = await runCli(['build', '--source', 'laion', '--input', notParquet, '--output', output, ...LOOPBACK]);
  assert.equal(bad.code, 1, bad.err);
  assertErrorLine(bad.err, 'E_INPUT', /rows\.parquet is not a parquet file/);
  await assert.rejects(stat(join(output, 'build.json')), /ENOENT/);

  const badCidr = await runCli(['build', '--source', 'laion', '--input', input, '--output', output, '--allow-private-network', '127.0.0.1/99']);
  assert.equal(badCidr.code, 2, badCidr.err);
  assertErrorLine(badCidr.err, 'E_USAGE', /invalid CIDR/);
  await assert.rejects(stat(join(output, 'build.json')), /ENOENT/);

  const good = await runCli(['build', '--source', 'laion', '--input', input, '--output', output, '--quiet', ...LOOPBACK]);
  assert.equal(good.code, 0, good.err);
  assert.match(good.out, /success\s+2\b/);
});

test('usage errors name the flag and print in the one error format, exit 2', async () => {
  const [body, limit, unknown, noMixture, missing] = await Promise.all([
    runCli(['build', '--source', 'laion', '--input', input, '--output', join(dir, 'o1'), '--max-body-size', '1e12']),
    runCli(['build', '--source', 'laion', '--input', input, '--output', join(dir, 'o2'), '--limit', '0']),
    runCli(['inspect', 'x', '--no-such-flag']),
    runCli(['train']),
    runCli(['inspect', join(dir, 'nope.tar')]),
  ]);
  assert.equal(body.code, 2);
  assertErrorLine(body.err, 'E_USAGE', /--max-body-size.*from 0\.001 to 2000 MB, got "1e12"/);
  assert.doesNotMatch(body.err, /maxBodyBytes|e\+18|1000000000000000000/);
  assert.equal(limit.code, 2);
  assertErrorLine(limit.err, 'E_USAGE', /--limit/);
  assert.equal(unknown.code, 2);
  assertErrorLine(unknown.err, 'E_USAGE', /unknown option '--no-such-flag'/);
  assert.equal(noMixture.code, 2);
  assertErrorLine(noMixture.err, 'E_USAGE', /required option --mixture <MIX_DIR> is missing/);
  assert.equal(missing.code, 1);
  assertErrorLine(missing.err, 'E_NOT_FOUND', /no such shard/);
});

test('a tar header whose checksum field is not a number says so, never "stored NaN"', async () => {
  const header = Buffer.from(ustarHeader('k.txt', 2));
  header.write('zzzzzz\0 ', 148, 'latin1');
  const tar = join(dir, 'garbled.tar');
  await writeFile(tar, Buffer.concat([header, Buffer.alloc(512 * 3)]));
  const r = await runCli(['inspect', tar]);
  assert.equal(r.code, 3, r.err);
  assert.doesNotMatch(r.out, /NaN/);
  assert.match(r.out, /bad tar header checksum at byte 0 \(the checksum field holds no number\)/);
});

test('--help marks required flags, writes defaults one way, lists per-source defaults', async () => {
  const r = await runCli(['build', '--help']);
  assert.equal(r.code, 0);
  const help = r.out.replace(/\n\s+/g, ' ');
  for (const flag of ['--source <name>', '--input <files...>', '--output <location>']) {
    assert.match(help, new RegExp(`${flag.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} [^-]*\\(required`), flag);
  }
  assert.doesNotMatch(help, /\(default [^:]/, 'every default is written "(default: x)"');
  assert.match(help, /--max-aspect-ratio <r> .*\(default: obelisc 2, pmd none, laion 3, wikipedia 3\)/);
  assert.match(help, /--max-text-bytes <n> .*\(default: laion 16384, pmd 65536, obelics and wikipedia 1048576\)/);
  assert.match(help, /--resize-mode <mode> .*keep_ratio_largest/);
  assert.match(help, /--input-format <format>/);
});
