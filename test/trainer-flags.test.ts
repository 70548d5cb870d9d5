import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Command } from 'commander';
import { loadProfile } from '../mixer/profile.ts';
import { resolveHyperParameters } from '../trainer/hyper-parameters.ts';
import { lossSvg } from '../trainer/metrics.ts';
import { trainOnMixtureOptionsOf, trainOptions, type TrainerFlags } from '../cli/train-flags.ts';

function parse(args: string[]): TrainerFlags & { runDir: string } {
  const command = new Command('train').exitOverride().configureOutput({ writeErr: () => {} });
  for (const option of trainOptions()) command.addOption(option);
  command.parse(args, { from: 'user' });
  return command.opts<TrainerFlags & { runDir: string }>();
}

test("train flags: defaults, overrides reach the hyper-parameters, a lone Adam beta keeps the profile's other", async () => {
  // No default for the model or the steps: a new run takes tiny and the plan's budget, a resumed one its own.
  const defaults = trainOnMixtureOptionsOf(parse(['--run-dir', 'RUN']));
  assert.deepEqual(
    [defaults.runDir, defaults.steps, defaults.model, defaults.backend, defaults.checkpointEvery, defaults.resume],
    ['RUN', undefined, undefined, 'auto', 50, false],
  );
  const options = trainOnMixtureOptionsOf({
    ...parse(['--run-dir', 'RUN', '--lr', '1e-2', '--adam-beta2', '0.95', '--tokens-per-step', '1024', '--stop-at', '7', '--resume', '--backend', 'wasm']),
    steps: 40,
  });
  const h = resolveHyperParameters(await loadProfile('atum-9b'), 40, options.overrides);
  assert.deepEqual(
    [h.learningRate, h.finalLearningRate, h.tokensPerStep, h.adamBetas, options.stopAt, options.resume, options.backend],
    [1e-2, 6e-6, 1024, [0.9, 0.95], 7, true, 'wasm'],
  );
  const hf = trainOnMixtureOptionsOf(parse(['--run-dir', 'RUN', '--init-from', 'llama-7b', 'clip-vit-h-14/model.safetensors', '--export-hf', 'out/hf']));
  assert.deepEqual([hf.initFrom, hf.exportHf], [['llama-7b', 'clip-vit-h-14/model.safetensors'], 'out/hf']);
  assert.throws(() => parse(['--run-dir', 'RUN', '--adam-beta1', '1']), /below 1/);
  assert.throws(() => parse(['--run-dir', 'RUN', '--backend', 'tpu']), /Allowed choices/);
});

test('loss chart: one polyline point per finite loss, axes labelled with the range', () => {
  const svg = lossSvg([
    { step: 1, loss: 10 },
    { step: 2, loss: Number.NaN },
    { step: 3, loss: 4 },
  ]);
  assert.match(svg, /points="[\d.]+,[\d.]+ [\d.]+,[\d.]+"/);
  assert.match(svg, />10\.000</);
  assert.match(svg, />4\.000</);
});
