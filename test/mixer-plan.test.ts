import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkProfile, listProfiles, loadProfile, type MixProfile } from '../mixer/profile.ts';
import { parseCount, parseMode } from '../cli/parse.ts';
import { planMixture, type SourceSupply } from '../mixer/plan.ts';

const assumed = (name: string, tokens: number): SourceSupply => ({ name, tokens, samples: 0, images: 0, shards: 0, assumed: true });

test("the four built-in profiles load, with the cards' epochs and shares", async () => {
  const names = (await listProfiles()).map((p) => p.name);
  assert.deepEqual(names, ['atum-80b', 'atum-9b', 'idefics-80b', 'idefics-9b']);
  const draft = await loadProfile('atum-80b');
  assert.deepEqual(
    draft.sources.map((s) => [s.name, s.epochs, s.share]),
    [
      ['pmd', 3, 0.7385],
      ['laion', 1, 0.0615],
      ['obelisc', 3, 0.0282],
      ['wikipedia', 1, 0.1718],
    ],
  );
  assert.equal(draft.tokensPerStep, 3_670_000);
  assert.equal((await loadProfile('atum-9b')).tokensPerStep, 1_310_000);
  assert.deepEqual((await loadProfile('atum-9b')).training.learningRate, { initial: 1e-5, final: 6e-6, warmupSteps: 2000, decay: 'linear' });
  const final = await loadProfile('idefics-80b');
  assert.deepEqual(
    final.sources.map((s) => [s.name, s.epochs, s.share, s.cardTokens]),
    [
      ['obelisc', 1, 0.7385, 114.9e9],
      ['wikipedia', 3, 0.0615, 3.192e9],
      ['laion', 1, 0.1718, 29.9e9],
      ['pmd', 3, 0.0282, 1.6e9],
    ],
  );
});

test('a broken profile is refused with the field named', async () => {
  const good = await loadProfile('atum-9b');
  const broken = (edit: (p: Record<string, any>) => void): unknown => {
    const copy = structuredClone(good) as Record<string, any>;
    edit(copy);
    return copy;
  };
  assert.throws(() => checkProfile(broken((p) => (p.sources[0].share = 0.5))), /field sources\[\]\.share must sum to 1/);
  assert.throws(() => checkProfile(broken((p) => (p.sources[2].epochs = -1))), /field sources\[2\]\.epochs must be a number of 0 or more \(found -1\)/);
  assert.throws(() => checkProfile(broken((p) => (p.sources[1].weight = 2))), /field sources\[1\]\.weight is unknown/);
  assert.throws(() => checkProfile(broken((p) => (p.training.zLoss = 1))), /field training\.zLoss is unknown/);
  assert.throws(() => checkProfile(broken((p) => delete p.sequenceLength)), /field sequenceLength is missing/);
  assert.throws(() => checkProfile(broken((p) => (p.sources[0].layout = 'pairs'))), /field sources\[0\]\.layout must be one of "pair", "document"/);
  assert.throws(() => checkProfile(broken((p) => (p.sources[1].name = 'pmd'))), /field sources\[1\]\.name repeats pmd/);
  // Names an object's prototype has are not fields (JSON.parse makes `__proto__` an own key, as a user's file would).
  for (const name of ['toString', 'constructor', 'hasOwnProperty']) {
    assert.throws(() => checkProfile(broken((p) => (p[name] = 1))), new RegExp(`field ${name} is unknown`));
    assert.throws(() => checkProfile(broken((p) => (p.training[name] = 1))), new RegExp(`field training\\.${name} is unknown`));
  }
  assert.throws(() => checkProfile(JSON.parse(JSON.stringify(good).replace('{', '{"__proto__":{"x":1},'))), /field __proto__ is unknown/);
  // What train will need is checked when mixing: a window needs 16 tokens; warmup within the card's steps.
  assert.throws(() => checkProfile(broken((p) => (p.sequenceLength = 1))), /field sequenceLength must be a whole number of at least 16 \(found 1\)/);
  assert.throws(() => checkProfile(broken((p) => (p.training.learningRate.warmupSteps = 300_000))), /warmupSteps must not exceed maxSteps 200000/);
  assert.throws(() => checkProfile(broken((p) => (p.tokensPerStep = 0.5))), /field tokensPerStep must be a whole number over 0/);
  // Within rounding of two-decimal percentages, shares are accepted.
  assert.doesNotThrow(() => checkProfile(broken((p) => (p.sources[0].share = 0.7386))));
});

test('a user profile file is read and checked; a missing name lists the built-in ones', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'm4-profile-'));
  const own = structuredClone(await loadProfile('atum-9b')) as MixProfile;
  own.name = 'mine';
  own.sources = [{ name: 'laion', layout: 'pair', epochs: 2, share: 1 }];
  await writeFile(join(dir, 'mine.json'), JSON.stringify(own));
  assert.equal((await loadProfile(join(dir, 'mine.json'))).name, 'mine');
  await writeFile(join(dir, 'bad.json'), '{"format": ');
  await assert.rejects(loadProfile(join(dir, 'bad.json')), /is not valid JSON/);
  await assert.rejects(loadProfile('atum-7b'), /no profile named atum-7b \(built in: atum-80b, atum-9b, idefics-80b, idefics-9b/);
});

test("the paper's table: idefics-80b by epochs on the final card's token counts derives 72.2 / 6.0 / 18.8 / 3.0 %", async () => {
  const profile = await loadProfile('idefics-80b');
  const plan = planMixture({
    profile,
    mode: parseMode('epochs'),
    seed: 0,
    supplies: [
      assumed('obelisc', parseCount('114.9B')),
      assumed('wikipedia', parseCount('3.192B')),
      assumed('laion', parseCount('29.9B')),
      assumed('pmd', parseCount('1.6B')),
    ],
  });
  const shares = Object.fromEntries(plan.sources.map((s) => [s.name, Math.round(s.share * 1000) / 10]));
  assert.deepEqual(shares, { obelisc: 72.2, wikipedia: 6.0, laion: 18.8, pmd: 3.0 });
  // Hand computation: 114.9 + 3 x 3.192 + 29.9 + 3 x 1.6 = 159.176B tokens.
  assert.equal(plan.budget.tokens, 159_176_000_000);
  const laion = plan.sources.find((s) => s.name === 'laion')!;
  assert.equal(Math.round((laion.share - laion.card.share) * 1000) / 10, 1.6, 'LAION 1.6 points over the card');
  assert.deepEqual(
    plan.sources.map((s) => s.epochs),
    [1, 3, 1, 3],
  );
});

test("proportions keeps the shares and spends the budget; anchor keeps one source's epochs", async () => {
  const profile = await loadProfile('atum-9b');
  const supplies = [assumed('pmd', 1000), assumed('laion', 4000), assumed('obelisc', 2000), assumed('wikipedia', 500)];
  const byBudget = planMixture({ profile, mode: parseMode('proportions'), supplies, seed: 0, budgetTokens: 10_000 });
  assert.deepEqual(
    byBudget.sources.map((s) => Math.round(s.tokens)),
    [7385, 615, 282, 1718],
  );
  assert.deepEqual(
    byBudget.sources.map((s) => s.epochs),
    [7.385, 0.15375, 0.141, 3.436],
  );
  const bySteps = planMixture({ profile, mode: parseMode('proportions'), supplies, seed: 0, steps: 2 });
  assert.equal(bySteps.budget.tokens, 2 * 1_310_000);
  const byDefault = planMixture({ profile, mode: parseMode('proportions'), supplies, seed: 0 });
  assert.equal(byDefault.budget.tokens, 200_000 * 1_310_000);
  // anchor:pmd: PMD's 3 epochs over 1000 tokens are 73.85% of the budget.
  const anchored = planMixture({ profile, mode: parseMode('anchor:pmd'), supplies, seed: 0 });
  assert.ok(Math.abs(anchored.budget.tokens - 3000 / 0.7385) < 1e-6);
  assert.equal(anchored.sources[0]!.epochs, 3);
  assert.deepEqual(
    anchored.sources.map((s) => s.share.toFixed(4)),
    ['0.7385', '0.0615', '0.0282', '0.1718'],
  );
  assert.throws(
    () => planMixture({ profile, mode: parseMode('epochs'), supplies, seed: 0, steps: 3 }),
    /a budget \(in steps or tokens\) is set in proportions mode only; mode epochs derives it/,
  );
  assert.throws(() => planMixture({ profile, mode: parseMode('anchor:coco'), supplies, seed: 0 }), /no such source in the mix/);
  assert.throws(() => parseMode('tokens'), /expected proportions, epochs or anchor:NAME/);
});

test('a profile source not given is refused, or left out loudly with --drop-missing', async () => {
  const profile = await loadProfile('atum-9b');
  const supplies = [assumed('pmd', 1000), assumed('laion', 4000), assumed('wikipedia', 500)];
  assert.throws(
    () => planMixture({ profile, mode: parseMode('proportions'), supplies, seed: 0, budgetTokens: 1000 }),
    /needs source obelisc: give its built location \(or an assumed token count\), or drop missing sources/,
  );
  const plan = planMixture({ profile, mode: parseMode('proportions'), supplies, seed: 0, budgetTokens: 1000, dropMissing: true });
  assert.deepEqual(plan.dropped, ['obelisc']);
  const kept = 0.7385 + 0.0615 + 0.1718;
  assert.deepEqual(
    plan.sources.map((s) => s.share.toFixed(6)),
    [0.7385 / kept, 0.0615 / kept, 0.1718 / kept].map((x) => x.toFixed(6)),
  );
  assert.throws(
    () => planMixture({ profile, mode: parseMode('proportions'), supplies: [...supplies, assumed('coco', 10)], seed: 0, dropMissing: true }),
    /source coco is not in profile atum-9b/,
  );
});

test('counts are read as the cards write them', () => {
  assert.equal(parseCount('114.9B'), 114_900_000_000);
  assert.equal(parseCount('3.192b'), 3_192_000_000);
  assert.equal(parseCount('1.5M'), 1_500_000);
  assert.equal(parseCount('20k'), 20_000);
  assert.equal(parseCount('2000'), 2000);
  assert.throws(() => parseCount('-3B'), /is not a count/);
  assert.throws(() => parseCount('lots'), /is not a count/);
});

test('non-finite and empty plans are refused: a budget of 1e400, one that rounds to 0 tokens, epochs of 1e308', async () => {
  assert.throws(() => parseCount('1e400'), /too large a count/);
  assert.throws(() => parseCount('0.4'), /rounds to 0 tokens/);
  const profile = await loadProfile('atum-9b');
  const supplies = [assumed('pmd', 1e6), assumed('laion', 1e6), assumed('obelisc', 1e6), assumed('wikipedia', 1e6)];
  assert.throws(
    () => planMixture({ profile, mode: { kind: 'proportions' }, supplies, seed: 0, budgetTokens: Infinity }),
    /budget must be a finite number of at least 1 token \(got Infinity\)/,
  );
  assert.throws(() => planMixture({ profile, mode: { kind: 'proportions' }, supplies, seed: 0, budgetTokens: 0.3 }), /at least 1 token/);
  const huge = checkProfile({ ...structuredClone(profile), sources: profile.sources.map((s) => ({ ...s, epochs: s.name === 'pmd' ? 1e308 : s.epochs })) });
  assert.throws(() => planMixture({ profile: huge, mode: { kind: 'epochs' }, supplies, seed: 0 }), /token counts are not finite \(pmd\)/);
});
