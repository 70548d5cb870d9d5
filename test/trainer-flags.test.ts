import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Command } from 'commander';
import { loadProfile } from '../mixer/profile.ts';
import { resolveHyperParameters } from '../trainer/hyper-parameters.ts';
import { lossSvg } from '../trainer/metrics.ts';
import { trainOptions, trainingOptionsFromFlags, type TrainFlags } from '../cli/train-flags.ts';

function parse(args: string[]): TrainFlags {
  const command = new Command('train').exitOverride().configureOutput({ writeErr: () => {} });
  for (const option of trainOptions()) command.addOption(option);
  command.parse(args, { from: 'user' });
  return command.opts<TrainFlags>();
}

test("train flags: defaults, overrides reach the hyper-parameters, a lone Adam beta keeps the profile's other", async () => {
  const defaults = trainingOptionsFromFlags(parse(['--run-dir', 'RUN']));
  assert.deepEqual([defaults.runDir, defaults.steps, defaults.model, defaults.backend, defaults.checkpointEvery, defaults.resume], ['RUN', 100, 'tiny', 'auto', 50, false]);
  const options = trainingOptionsFromFlags(parse(['--run-dir', 'RUN', '--steps', '40', '--lr', '1e-2', '--adam-beta2', '0.95', '--tokens-per-step', '1024', '--stop-at', '7', '--resume', '--backend', 'wasm']));
  const h = resolveHyperParameters(await loadProfile('atum-9b'), options.steps, options.overrides);
  assert.deepEqual([h.learningRate, h.finalLearningRate, h.tokensPerStep, h.adamBetas, options.stopAt, options.resume, options.backend], [1e-2, 6e-6, 1024, [0.9, 0.95], 7, true, 'wasm']);
  const hf = trainingOptionsFromFlags(parse(['--run-dir', 'RUN', '--init-from', 'llama-7b', 'clip-vit-h-14/model.safetensors', '--export-hf', 'out/hf']));
  assert.deepEqual([hf.initFrom, hf.exportHf], [['llama-7b', 'clip-vit-h-14/model.safetensors'], 'out/hf']);
  assert.throws(() => parse(['--run-dir', 'RUN', '--adam-beta1', '1']), /below 1/);
  assert.throws(() => parse(['--run-dir', 'RUN', '--backend', 'tpu']), /Allowed choices/);
  assert.throws(() => parse([]), /run-dir/);
});

test('loss chart: one polyline point per finite loss, axes labelled with the range', () => {
  const svg = lossSvg([{ step: 1, loss: 10 }, { step: 2, loss: Number.NaN }, { step: 3, loss: 4 }]);
  assert.match(svg, /points="[\d.]+,[\d.]+ [\d.]+,[\d.]+"/);
  assert.match(svg, />10\.000</);
  assert.match(svg, />4\.000</);
});
