import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { readShard } from '../shards/tar-reader.ts';
import { startHostileServer, type HostileFile } from '../sandbox/hostile-server.ts';
import { jpeg } from '../sandbox/images.ts';
import { filesOf } from './helpers/pair-build.ts';
import { writeParquetFixture } from '../sandbox/parquet-files.ts';

const BIN = new URL('../bin/m4data.mjs', import.meta.url).pathname;

/** Runs the CLI without blocking this process: the image server the build downloads from lives here. */
function run(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => resolve({ code, stderr }));
  });
}
const ROWS = 36;

test('a build killed with SIGKILL leaves no partial shard, and resuming gives the same bytes as an uninterrupted build', async (t) => {
  const files = new Map<string, HostileFile>();
  for (let i = 0; i < 6; i++) files.set(`img${i}.jpg`, { body: await jpeg(240 + 10 * i, 200, { seed: i }), contentType: 'image/jpeg' });
  const server = await startHostileServer(files);
  const dir = await mkdtemp(join(tmpdir(), 'm4-crash-'));
  t.after(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });
  const input = join(dir, 'in.parquet');
  // Slow answers make the build last long enough to be killed between shards.
  await writeParquetFixture(
    input,
    { URL: 'VARCHAR', TEXT: 'VARCHAR' },
    Array.from({ length: ROWS }, (_, i) => [server.url(`/slow-headers/60/f/img${i % 6}.jpg`), `caption ${i}`]),
  );
  const args = (output: string) => [
    BIN,
    'build',
    '--source',
    'laion',
    '--input',
    input,
    '--output',
    output,
    '--samples-per-shard',
    '3',
    '--concurrency',
    '2',
    '--allow-private-network',
    '127.0.0.1/32',
    '--quiet',
  ];

  const killed = join(dir, 'killed');
  const child = spawn(process.execPath, args(killed), { stdio: 'ignore' });
  const published = async () => (await readdir(killed).catch(() => [] as string[])).filter((f) => f.endsWith('.stats.json')).length;
  const deadline = Date.now() + 30_000;
  while ((await published()) < 3 && Date.now() < deadline) await sleep(20);
  child.kill('SIGKILL');
  await new Promise((resolve) => child.once('exit', resolve));
  const shardsAtKill = await published();
  assert.ok(shardsAtKill >= 3 && shardsAtKill < ROWS / 3, `killed mid-way (${shardsAtKill} shards published)`);

  // Every visible tar is complete: readShard throws unless it reads to the end-of-archive marker.
  for (const name of (await readdir(killed)).filter((f) => f.endsWith('.tar'))) {
    for await (const _ of readShard(join(killed, name)));
  }
  assert.equal((await readdir(killed)).includes('manifest.json'), false, 'no manifest before every shard exists');

  // What a kill leaves mid-write, made sure of for the last shard (the kill above leaves it by chance): every file of
  // the shard under its temporary name, the index's included.
  const last = `laion-${String(ROWS / 3 - 1).padStart(6, '0')}`;
  for (const side of ['tar', 'idx.json', 'outcomes.parquet', 'stats.json']) await writeFile(join(killed, `${last}.${side}.tmp-0123456789ab`), 'partial');
  const resumed = await run(args(killed));
  assert.equal(resumed.code, 0, resumed.stderr);
  const clean = join(dir, 'clean');
  const uninterrupted = await run(args(clean));
  assert.equal(uninterrupted.code, 0, uninterrupted.stderr);

  assert.deepEqual(
    (await readdir(killed)).filter((f) => f.includes('.tmp-')),
    [],
    'the resumed build discarded what the killed one left',
  );
  const a = await filesOf(killed);
  const b = await filesOf(clean);
  assert.deepEqual(Object.keys(a), Object.keys(b));
  for (const name of Object.keys(b)) assert.ok(a[name]!.equals(b[name]!), `${name} differs after resume`);
  assert.ok('manifest.json' in a);
  const manifest = JSON.parse(a['manifest.json']!.toString());
  assert.equal(manifest.totals.samples, ROWS, 'every row downloaded in both builds');
});
