import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cp, mkdir, mkdtemp, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { collect, planFour, writeFourSources } from './helpers/mixtures.ts';
import { runCli } from './helpers/run-cli.ts';

// Issue 13: what hostile input and a new user did to `m4data train` and `train --dry-run`, through the CLI.

const BIN = new URL('../bin/m4data.mjs', import.meta.url).pathname;
const dir = await mkdtemp(join(tmpdir(), 'm4-train-harden-'));
test.after(() => rm(dir, { recursive: true, force: true }));
const data = join(dir, 'data');
await planFour(join(dir, 'mix'), await writeFourSources(data), { budget: 8000 });
const MIX = join(dir, 'mix');
const SHAPE = ['--batch-size', '1', '--seq-len', '256', '--max-images', '4', '--workers', '1'];

function errorLine(stderr: string): string {
  return stderr.split('\n').find((line) => line.startsWith('m4data: ')) ?? `(no error line in ${JSON.stringify(stderr)})`;
}

test('outputs on /proc, or through a file, are refused at once with exit 2 (they used to spin forever)', async () => {
  const file = join(dir, 'a-file');
  await writeFile(file, 'x');
  const cases: [string[], RegExp][] = [
    [['--dry-run', '--dump', '/proc/m4data-dump'], /--dump \/proc\/m4data-dump: \/proc is on the kernel's proc file system/],
    [['--dry-run', '--save-state', '/proc/m4data/state.json'], /--save-state \/proc\/m4data\/state\.json: \/proc is on the kernel's proc file system/],
    [['--run-dir', '/proc/m4data-run'], /run directory \/proc\/m4data-run: \/proc is on the kernel's proc file system/],
    [['--run-dir', join(file, 'run')], /a-file is a file, not a folder/],
    [['--dry-run', '--dump', file], /is an existing file, not a folder/],
  ];
  for (const [args, message] of cases) {
    const r = await runCli(['train', '--mixture', MIX, ...SHAPE, ...args], { timeoutMs: 30_000 });
    assert.equal(r.killed, false, `${args.join(' ')}: it hung`);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assert.match(errorLine(r.err), message);
  }
});

test('the card shapes are refused before anything is allocated, with the memory they need and how to run them', async () => {
  for (const [model, backend] of [
    ['atum-9b', 'wasm'],
    ['atum-80b', 'cpu'],
  ]) {
    const r = await runCli(['train', '--mixture', MIX, '--run-dir', join(dir, `run-${model}`), '--model', model!, '--backend', backend!, ...SHAPE], {
      timeoutMs: 60_000,
    });
    assert.equal(r.code, 2, r.err);
    assert.match(
      errorLine(r.err),
      new RegExp(
        `model ${model} .* needs about [\\d.]+ GB to train \\(weights [\\d.]+ GB, optimizer .*\\), more than the ${backend} backend can hold .*nothing was ` +
          `allocated\\. Train it with --backend tfjs-node-gpu`,
      ),
    );
  }
});

test('batch shapes the machine cannot hold are refused up front; more workers than cores are capped, saying so', async () => {
  const huge = await runCli(['train', '--dry-run', '--mixture', MIX, '--batch-size', '100000', '--steps', '1'], { timeoutMs: 30_000 });
  assert.equal(huge.code, 2, huge.err);
  assert.match(
    errorLine(huge.err),
    /batches of 100000 x 1024 tokens with 16 image slots, 3 decoding ahead, need about [\d.]+ TB .* lower --batch-size, --max-images or --prefetch/,
  );
  const workers = await runCli(['train', '--dry-run', '--mixture', MIX, ...SHAPE.slice(0, -2), '--workers', '500', '--steps', '1', '--quiet'], {
    timeoutMs: 60_000,
  });
  assert.equal(workers.code, 0, workers.err);
  assert.match(workers.out, /^workers: 500 capped at \d+, the cores available$/m);
});

test('a shard corrupted after planning: the dry run and training name it and the samples lost, and exit 3', async () => {
  const broken = join(dir, 'broken');
  await cp(data, join(broken, 'data'), { recursive: true });
  const mixture = await planFour(join(broken, 'mix'), new Map(['pmd', 'laion', 'obelisc', 'wikipedia'].map((name) => [name, join(broken, 'data', name)])), {
    budget: 8000,
  });
  // Garbage over the header of the mixture's first PMD sample: same size, same index, so only reading that sample finds
  // it (each sample is decoded on its own, its neighbours stay readable), and both runs below read it.
  const first = (await collect(mixture.stream(), 50)).find((s) => s.source === 'pmd')!;
  const index = JSON.parse(await readFile(first.shard.replace(/\.tar$/, '.idx.json'), 'utf8')) as { entries: { key: string; offset: number }[] };
  const file = await open(first.shard, 'r+');
  await file.write(Buffer.alloc(512, 0x5a), 0, 512, index.entries.find((e) => e.key === first.key)!.offset);
  await file.close();
  const shard = basename(first.shard).replace('.', '\\.');
  const dry = await runCli(['train', '--dry-run', '--mixture', join(broken, 'mix'), ...SHAPE, '--quiet'], { timeoutMs: 120_000 });
  assert.equal(dry.code, 3, dry.err);
  assert.match(dry.out, /^DATA LOST: 1 shard could not be read in full, so the mixture lost pmd [\d,]+ samples? \([\d,]+ tokens\):$/m);
  assert.match(dry.out, new RegExp(`^ {2}.*${shard}.*bad tar header checksum`, 'm'));
  const train = await runCli(
    ['train', '--mixture', join(broken, 'mix'), '--run-dir', join(broken, 'run'), '--backend', 'wasm', '--steps', '2', '--tokens-per-step', '256', ...SHAPE],
    { timeoutMs: 120_000 },
  );
  assert.equal(train.code, 3, train.err);
  assert.match(train.out, /^step 2\/2 {2}loss/m);
  assert.match(train.out, /^DATA LOST: 1 shard could not be read in full/m);
});

test("a resumed run keeps its own batch shape and learning rate without repeating a flag (the README's example)", async () => {
  const run = join(dir, 'readme-run');
  const first = await runCli(
    ['train', '--mixture', MIX, '--run-dir', run, '--steps', '3', '--backend', 'wasm', ...SHAPE, '--tokens-per-step', '256', '--lr', '1e-2', '--stop-at', '1'],
    { timeoutMs: 120_000 },
  );
  assert.equal(first.code, 0, first.err);
  const resumed = await runCli(['train', '--mixture', MIX, '--run-dir', run, '--resume', '--backend', 'wasm'], { timeoutMs: 120_000 });
  assert.equal(resumed.code, 0, resumed.err);
  assert.match(resumed.out, /^training 3 steps of 1 batch\(es\) of 1 x 256 tokens/m);
  assert.match(resumed.out, /^step 2\/3 .* lr [\d.]+e-3/m);
  assert.doesNotMatch(resumed.out, /changed on resume/);
  const reshaped = await runCli(['train', '--mixture', MIX, '--run-dir', run, '--resume', '--backend', 'wasm', '--batch-size', '2'], { timeoutMs: 60_000 });
  assert.equal(reshaped.code, 2);
  assert.match(errorLine(reshaped.err), /the run was trained on batches with batchSize 1; resuming with 2 would change its batches/);
  const missing = await runCli(['train', '--mixture', MIX, '--run-dir', join(dir, 'never-ran'), '--resume', '--backend', 'wasm'], { timeoutMs: 60_000 });
  assert.equal(missing.code, 2);
  assert.match(errorLine(missing.err), /nothing to resume: .*never-ran holds no checkpoint/);
});

test('Ctrl-C before the first step ends with 130 and says no checkpoint was written (none claimed)', async () => {
  const run = join(dir, 'interrupted');
  // Many micro-batches per step: the first step is still running when the interrupt comes.
  const child = spawn(process.execPath, [BIN, 'train', '--mixture', MIX, '--run-dir', run, '--backend', 'wasm', ...SHAPE, '--tokens-per-step', '65536']);
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
    if (/^backend wasm/m.test(out) && !child.killed) child.kill('SIGINT');
  });
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(code, 130, out);
  assert.match(out, /^interrupted before the first step completed: no checkpoint was written$/m);
  await assert.rejects(stat(join(run, 'checkpoint.safetensors')), /ENOENT/);
});

test('--dump writes whole batches only; a rerun continues its own dump and refuses anything else', async () => {
  const dump = join(dir, 'dump');
  const args = ['train', '--dry-run', '--mixture', MIX, ...SHAPE, '--steps', '12', '--dump', dump, '--quiet'];
  // Killed in the middle: whatever it left is either a whole batch or a temporary folder.
  const child = spawn(process.execPath, [BIN, ...args]);
  for (let i = 0; i < 600 && !(await readdir(dump).catch((): string[] => [])).includes('batch-000002'); i++) await new Promise((r) => setTimeout(r, 50));
  child.kill('SIGKILL');
  await new Promise((resolve) => child.on('close', resolve));
  for (const name of await readdir(dump)) {
    if (/^batch-\d+$/.test(name))
      assert.deepEqual(
        (await readdir(join(dump, name))).sort(),
        ['attention_mask.npy', 'image_attention_mask.npy', 'input_ids.npy', 'labels.npy', 'pixel_values.npy'],
        name,
      );
    else assert.match(name, /^(dump\.json|batch-\d+\.tmp-[0-9a-f]{12})$/);
  }
  const again = await runCli(args, { timeoutMs: 120_000 });
  assert.equal(again.code, 0, again.err);
  const names = await readdir(dump);
  assert.equal(names.filter((n) => /^batch-\d+$/.test(n)).length, 12);
  assert.deepEqual(
    names.filter((n) => n.includes('.tmp-')),
    [],
  );
  const other = await runCli(['train', '--dry-run', '--mixture', MIX, ...SHAPE.slice(2), '--batch-size', '2', '--steps', '1', '--dump', dump], {
    timeoutMs: 60_000,
  });
  assert.equal(other.code, 2);
  assert.match(
    errorLine(other.err),
    /--dump .*dump holds the batches of another mixture, rank or batch shape: give a new or empty folder \(nothing was written\)/,
  );
  const mine = join(dir, 'my-folder');
  await mkdir(mine);
  await writeFile(join(mine, 'results.csv'), 'mine');
  const intoMine = await runCli(['train', '--dry-run', '--mixture', MIX, ...SHAPE, '--steps', '1', '--dump', mine], { timeoutMs: 60_000 });
  assert.equal(intoMine.code, 2);
  assert.match(errorLine(intoMine.err), /holds files m4data did not dump \(results\.csv\)/);
  assert.deepEqual(await readdir(mine), ['results.csv']);
});

test('train --help: exit 3 is explained, and exit 130 is a training checkpoint only', async () => {
  const r = await runCli(['train', '--help']);
  assert.equal(r.code, 0);
  assert.match(r.out, /3 corrupt source shards were skipped/);
  assert.match(r.out, /a --dry-run interrupted saves nothing/);
});
