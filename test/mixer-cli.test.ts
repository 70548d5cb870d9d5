import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadProfile } from '../mixer/profile.ts';
import { writeFourSources } from './helpers/mixtures.ts';

const BIN = new URL('../bin/m4data.mjs', import.meta.url).pathname;

function m4data(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

let dir: string;
let sources: string[];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'm4-mixcli-'));
  const locations = await writeFourSources(join(dir, 'data'));
  sources = [...locations].flatMap(([name, location]) => ['--source', `${name}=${location}`]);
});
after(() => rm(dir, { recursive: true, force: true }));

test('mix --list-profiles names the four profiles with their summaries', () => {
  const r = m4data('mix', '--list-profiles');
  assert.equal(r.code, 0);
  assert.match(r.out, /^atum-80b +draft ATUM card, 80B/m);
  assert.match(r.out, /^idefics-9b +published IDEFICS card, 9B/m);
  assert.equal(r.out.trim().split('\n').length, 4);
});

test('mix --help explains every mode with an example', () => {
  const r = m4data('mix', '--help');
  assert.equal(r.code, 0);
  for (const mode of ['proportions', 'epochs', 'anchor:NAME']) assert.match(r.out, new RegExp(`\\n  ${mode} +\\S`));
  assert.match(r.out, /m4data mix --profile idefics-80b --mode epochs --assume-tokens obelisc=114.9B/);
});

test('mix plans, prints the table, writes plan.json and plan.svg, and materialises with --materialize', async () => {
  const out = join(dir, 'mix');
  const r = m4data('mix', '--profile', 'atum-9b', ...sources, '--output', out, '--budget', '8k', '--materialize', '--samples-per-shard', '50', '--quiet');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^pmd .* 73\.85% .* share of the budget$/m);
  assert.match(r.out, /realised \(\d+ shards in /);
  const plan = JSON.parse(await readFile(join(out, 'plan.json'), 'utf8'));
  assert.deepEqual(
    plan.sources.map((s: { name: string }) => s.name),
    ['pmd', 'laion', 'obelisc', 'wikipedia'],
  );
  for (const s of plan.sources) for (const field of ['tokens', 'epochs', 'share']) assert.equal(typeof s[field], 'number', field);
  assert.match(await readFile(join(out, 'plan.svg'), 'utf8'), /^<svg [\s\S]*realised[\s\S]*<\/svg>\n$/);
  const realised = JSON.parse(await readFile(join(out, 'realised.json'), 'utf8'));
  assert.equal(realised.sources.length, 4);
  // How well mixed: per source, windows without it against what is expected, absence, runs, shards.
  assert.match(
    r.out,
    /how well mixed \(\d+ windows of 8192 tokens\):\nsource +windows without it +expected +longest absence +longest run +same shard as previous +shards per 1,000\n/,
  );
  // 8,000 tokens: no complete window of 8,192, so no share of windows (a dash), the rest measured.
  assert.match(r.out, /^laion +- +- +\S+ tokens +\d+ +\d+\.\d% +\d+$/m);
  assert.deepEqual(
    realised.quality.sources.map((s: { name: string }) => s.name),
    ['pmd', 'laion', 'obelisc', 'wikipedia'],
  );
  for (const field of ['windowsWithout', 'windowsWithoutExpected', 'longestAbsence', 'longestRun', 'adjacentSameShard', 'distinctShardsPer1000']) {
    assert.equal(typeof realised.quality.sources[1][field], 'number', field);
  }

  const again = m4data('mix', '--profile', 'atum-9b', ...sources, '--output', out, '--budget', '9k');
  assert.equal(again.code, 2);
  assert.match(again.err, /holds another mixture's plan; give another output \(nothing was changed\)/);
  assert.deepEqual(JSON.parse(await readFile(join(out, 'plan.json'), 'utf8')), plan, 'the first plan is untouched');
});

test('mix --json prints the plan as one object; --assume-tokens plans without data', () => {
  const r = m4data(
    'mix',
    '--profile',
    'idefics-9b',
    '--mode',
    'epochs',
    '--assume-tokens',
    'obelisc=114.9B',
    '--assume-tokens',
    'wikipedia=3.192B',
    '--assume-tokens',
    'laion=29.9B',
    '--assume-tokens',
    'pmd=1.6B',
    '--output',
    join(dir, 'paper'),
    '--json',
  );
  assert.equal(r.code, 0, r.err);
  const { plan } = JSON.parse(r.out);
  assert.deepEqual(
    plan.sources.map((s: { share: number }) => Math.round(s.share * 1000) / 10),
    [72.2, 6, 18.8, 3],
  );
});

test('mix refuses a missing source, a bad mode, a bad profile file; --drop-missing says so loudly', async () => {
  const three = sources.slice(0, 6);
  const missing = m4data('mix', '--profile', 'atum-9b', ...three, '--output', join(dir, 'm1'), '--budget', '1k');
  assert.equal(missing.code, 2);
  assert.match(missing.err, /profile atum-9b needs source wikipedia: give --source NAME=LOCATION .* or --drop-missing/);
  const dropped = m4data('mix', '--profile', 'atum-9b', ...three, '--output', join(dir, 'm2'), '--budget', '1k', '--drop-missing');
  assert.equal(dropped.code, 0, dropped.err);
  assert.match(dropped.out, /WARNING: left out wikipedia \(--drop-missing\)/);
  const mode = m4data('mix', '--profile', 'atum-9b', ...sources, '--output', join(dir, 'm3'), '--mode', 'tokens');
  assert.equal(mode.code, 2);
  assert.match(mode.err, /'--mode <mode>' argument 'tokens' is invalid\. "tokens": expected proportions, epochs or anchor:NAME/);
  const own = structuredClone(await loadProfile('atum-9b')) as unknown as Record<string, unknown>;
  own.mixture = 'yes';
  await writeFile(join(dir, 'own.json'), JSON.stringify(own));
  const bad = m4data('mix', '--profile', join(dir, 'own.json'), ...sources, '--output', join(dir, 'm4'));
  assert.equal(bad.code, 2);
  assert.match(bad.err, /field mixture is unknown/);
  const pairs = m4data('mix', '--profile', 'atum-9b', '--source', 'pmd', '--output', join(dir, 'm5'));
  assert.equal(pairs.code, 2);
  assert.match(pairs.err, /expected NAME=LOCATION/);
  const assumedMaterialize = m4data('mix', '--profile', 'atum-9b', '--assume-tokens', 'pmd=1B', '--drop-missing', '--output', join(dir, 'm7'), '--materialize');
  assert.equal(assumedMaterialize.code, 2);
  assert.match(assumedMaterialize.err, /--materialize needs built sources, not --assume-tokens/);
  const unbuilt = m4data('mix', '--profile', 'atum-9b', '--source', `pmd=${join(dir, 'nothing')}`, '--output', join(dir, 'm6'), '--drop-missing');
  assert.equal(unbuilt.code, 1);
  assert.match(unbuilt.err, /manifest\.json does not exist: is .* a dataset built by m4data build/);
});

test('mix --materialize over a corrupt shard exits 3 and names it; past --max-bad-shards it exits 1', async () => {
  await cp(join(dir, 'data'), join(dir, 'broken'), { recursive: true });
  await truncate(join(dir, 'broken', 'pmd', 'pmd-000000.tar'), 5000);
  const broken = sources.map((arg) => arg.replace(join(dir, 'data'), join(dir, 'broken')));
  const r = m4data('mix', '--profile', 'atum-9b', ...broken, '--output', join(dir, 'm-bad'), '--mode', 'epochs', '--materialize', '--quiet');
  assert.equal(r.code, 3, r.err);
  assert.match(r.out, /bad shard: .*pmd-000000\.tar/);
  assert.match(r.out, /^pmd .* \d+ samples$/m, 'the lost samples are counted');
  const strict = m4data(
    'mix',
    '--profile',
    'atum-9b',
    ...broken,
    '--output',
    join(dir, 'm-bad-strict'),
    '--mode',
    'epochs',
    '--materialize',
    '--max-bad-shards',
    '0',
    '--quiet',
  );
  assert.equal(strict.code, 1);
  assert.match(strict.err, /1 shards could not be read in full \(more than --max-bad-shards 0\).*pmd-000000\.tar.*\[E_TAR_CORRUPT\]/);
});
