import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isM4Error } from '../core/errors.ts';
import { openMixture, readSupplies } from '../mixer/mixture.ts';
import type { MixtureState } from '../mixer/mixture-stream-types.ts';
import { collect, planFour, writeFourSources } from './helpers/mixtures.ts';
import { runCli } from './helpers/run-cli.ts';

// Issue 13, items 7 and 9: a dataset changed since its plan, numbers in a manifest or an index that cannot be, and resume
// states that cannot be right are refused with a message naming what is wrong; never mixed silently.

let dir: string;
let data: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'm4-mix-trust-'));
  data = join(dir, 'data');
  await writeFourSources(data);
});
after(() => rm(dir, { recursive: true, force: true }));

/** A copy of the four datasets, and its locations. */
async function copy(name: string): Promise<{ root: string; locations: Map<string, string> }> {
  const root = join(dir, name);
  await cp(data, root, { recursive: true });
  return { root, locations: new Map(['pmd', 'laion', 'obelisc', 'wikipedia'].map((s) => [s, join(root, s)])) };
}

async function editJson(path: string, edit: (value: any) => void): Promise<void> {
  const value = JSON.parse(await readFile(path, 'utf8'));
  edit(value);
  await writeFile(path, JSON.stringify(value));
}

test("a sample's tokens edited in an index after planning: the stream is refused naming the index", async () => {
  const { root, locations } = await copy('edited-index');
  const mixture = await planFour(join(dir, 'mix-edited'), locations, { mode: 'epochs' });
  assert.ok((await collect(mixture.stream())).length > 0);
  // Two samples' tokens swapped: every total unchanged, only the fingerprint can tell.
  await editJson(join(root, 'laion', 'laion-000002.idx.json'), (index) => {
    [index.entries[3].tokens, index.entries[4].tokens] = [index.entries[4].tokens + 5, index.entries[3].tokens - 5];
  });
  const reopened = await openMixture(join(dir, 'mix-edited'));
  await assert.rejects(
    collect(reopened.stream()),
    (err: unknown) =>
      isM4Error(err, 'E_INPUT') &&
      /laion-000002\.idx\.json changed since the plan was made \(its sha256 is [0-9a-f]{12}\.\.\., the plan's [0-9a-f]{12}\.\.\.\): plan the mixture again/.test(
        err.message,
      ),
  );
  // Its tokens edited, and its record with them: the index no longer describes the manifest's shard.
  await editJson(join(root, 'laion', 'laion-000002.idx.json'), (index) => {
    index.entries[3].tokens += 100;
    index.tokens += 100;
  });
  await assert.rejects(collect(reopened.stream()), /laion-000002\.idx\.json says \d+ tokens, the manifest's record of laion-000002\.tar \d+/);
  // The record edited too, and the manifest with it: the manifest no longer matches the plan's fingerprint.
  await editJson(join(root, 'laion', 'manifest.json'), (m) => {
    m.shards[1].tokens += 100; // laion-000002 (shard 1 holds no sample, so it has no record)
    m.totals.tokens += 100;
  });
  await assert.rejects(
    openMixture(join(dir, 'mix-edited')),
    /laion changed since the plan was made: laion-000002\.tar has \d+ tokens, the plan used \d+; plan the mixture again/,
  );
  // An index whose entries no longer add up to its record is refused as it is read.
  await editJson(join(root, 'laion', 'laion-000000.idx.json'), (index) => (index.entries[0].tokens = 7));
  await assert.rejects(readSupplies(new Map([['laion', join(root, 'laion')]])), /laion-000000\.idx\.json says \d+ tokens, its entries hold \d+/);
});

test('numbers a manifest or an index cannot hold are refused, naming the field', async () => {
  const { root } = await copy('bad-numbers');
  const manifest = join(root, 'pmd', 'manifest.json');
  const original = await readFile(manifest, 'utf8');
  for (const [value, shown] of [
    [-64, '-64'],
    ['abc', '"abc"'],
    [2.5, '2.5'],
  ] as const) {
    await editJson(manifest, (m) => (m.shards[1].samples = value));
    await assert.rejects(
      readSupplies(new Map([['pmd', join(root, 'pmd')]])),
      new RegExp(`field shards\\[1\\]\\.samples must be a whole number of 0 or more \\(found ${shown.replace('.', '\\.')}\\)`),
    );
    await writeFile(manifest, original);
  }
  await editJson(manifest, (m) => (m.totals.samples += 1));
  await assert.rejects(readSupplies(new Map([['pmd', join(root, 'pmd')]])), /its totals disagree with its shard records: samples 76 against 75/);
  await writeFile(manifest, original);
  await editJson(join(root, 'pmd', 'pmd-000001.idx.json'), (index) => (index.entries[2].offset = -512));
  await assert.rejects(
    readSupplies(new Map([['pmd', join(root, 'pmd')]])),
    /pmd-000001\.idx\.json field entries\[2\]\.offset must be a whole number of 0 or more \(found -512\)/,
  );
});

test('inspect --verify never calls a dataset verified whose manifest disagrees with its shards (exit 3)', async () => {
  const { root } = await copy('inspect');
  const ok = await runCli(['inspect', join(root, 'obelisc'), '--verify']);
  assert.equal(ok.code, 0, ok.err);
  assert.match(ok.out, /shard sizes, sha256 and indexes verified/);
  await editJson(join(root, 'obelisc', 'manifest.json'), (m) => (m.totals.samples = 999));
  const totals = await runCli(['inspect', join(root, 'obelisc'), '--verify']);
  assert.equal(totals.code, 3, totals.err);
  assert.doesNotMatch(totals.out, /verified/);
  assert.match(totals.out, /problem: .*manifest\.json: its totals disagree with its shard records: samples 999 against 21/);
  await editJson(join(root, 'obelisc', 'manifest.json'), (m) => {
    m.totals.samples = 21;
    m.shards[0].tokens += 1;
    m.totals.tokens += 1;
  });
  const record = await runCli(['inspect', join(root, 'obelisc'), '--verify']);
  assert.equal(record.code, 3, record.err);
  assert.match(record.out, /obelisc-000000\.tar: its index says tokens \d+; the manifest tokens \d+/);
  assert.doesNotMatch(record.out, /verified/);
});

test('a plan made by an earlier m4data (version 1) is refused, saying to plan again', async () => {
  const { locations } = await copy('old-plan');
  await planFour(join(dir, 'mix-old'), locations);
  await editJson(join(dir, 'mix-old', 'plan.json'), (plan) => {
    plan.version = 1;
    for (const s of plan.sources) delete s.fingerprint;
  });
  await assert.rejects(openMixture(join(dir, 'mix-old')), /plan of version 1, made by an earlier m4data .*: plan the mixture again with m4data mix/);
});

test('every field of a resume state is checked, and a state of another mixture is refused', async () => {
  const { locations } = await copy('states');
  const mixture = await planFour(join(dir, 'mix-states'), locations, { budget: 12_000 });
  const stream = mixture.stream({ rank: 1, worldSize: 2 });
  await collect(stream, 30);
  const state = stream.state();
  const refused = (edit: (s: any) => void, pattern: RegExp) => {
    const bad = structuredClone(state) as any;
    edit(bad);
    assert.throws(
      () => mixture.stream({ rank: 1, worldSize: 2, resume: bad as MixtureState }),
      (err: unknown) => isM4Error(err, 'E_USAGE') && pattern.test(err.message),
      pattern.source,
    );
  };
  refused((s) => (s.replay.sources[0].taken = -3), /field replay\.sources\[0\]\.taken must be a whole number of 0 or more \(found -3\)/);
  refused((s) => (s.replay.sources[1].tokens = 'many'), /field replay\.sources\[1\]\.tokens must be a whole number of 0 or more \(found "many"\)/);
  refused((s) => (s.replay.position = 1e12), /field replay\.position is 1000000000000, but its cursors have taken \d+ samples \(one per position\)/);
  // Every batch PMD: the other sources' tokens made to look far ahead.
  refused(
    (s) => (s.replay.sources[1].tokens = 10_000_000),
    /field replay\.sources\[1\]\.tokens is 10000000, impossible after 0 epochs and \d+ samples of laion/,
  );
  refused((s) => (s.next = 8), /has next 8, which is not an item of rank 1 of 2/);
  refused((s) => (s.next = 1), /replays the schedule from position \d+, past the position of its next sample/);
  refused((s) => (s.leftovers = [{ first: 5, step: 0, count: 2 }]), /field leftovers\[0\]\.step must be a whole number of at least 1/);
  refused((s) => (s.extra = true), /has an unknown field "extra"/);
  // Same seed, same sources, another budget: another mixture.
  const other = await planFour(join(dir, 'mix-other'), locations, { budget: 13_000 });
  assert.equal(other.plan.seed, mixture.plan.seed);
  assert.throws(
    () => other.stream({ rank: 1, worldSize: 2, resume: state }),
    /was taken from another mixture \(plan fingerprint "[0-9a-f]{16}", this mixture's [0-9a-f]{16}\)/,
  );
  // The state as saved resumes.
  const rest = await collect(mixture.stream({ rank: 1, worldSize: 2, resume: JSON.parse(JSON.stringify(state)) }));
  assert.ok(rest.length > 0);
});
