import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type * as tf from '@tensorflow/tfjs';
import { isM4Error } from '../core/errors.ts';
import { loadProfile } from '../mixer/profile.ts';
import { SyntheticBatches } from '../sandbox/synthetic-batches.ts';
import { selectBackend } from '../trainer/backend.ts';
import { checkExportLocation, exportHf } from '../trainer/hf/export.ts';
import { createInitialModel, initialModelConfig } from '../trainer/hf/init-from.ts';
import { resolveHyperParameters } from '../trainer/hyper-parameters.ts';
import { modelPreset } from '../trainer/model-config.ts';
import { AtumModel } from '../trainer/model.ts';
import { openSafetensors } from '../trainer/safetensors.ts';
import { Trainer } from '../trainer/trainer.ts';
import { runCli } from './helpers/run-cli.ts';
import { synthesisedRun, type SyntheticRunOptions } from './helpers/synthetic-run.ts';
import { withTempDir } from './helpers/temp-dir.ts';

// The trained model out in transformers' IdeficsForVisionText2Text layout, and back in bit for bit.
await selectBackend('wasm');
const profile = await loadProfile('atum-9b');

const withDir = <T>(fn: (dir: string) => Promise<T>) => withTempDir('m4-hf-export-', fn);

const bits = (t: tf.Tensor) => Buffer.from((t.dataSync() as Float32Array).buffer).toString('base64');

test('export then import gives every weight back bit for bit, sharded with its index; config.json says what from_pretrained needs', async () => {
  await withDir(async (dir) => {
    const model = await AtumModel.create(modelPreset('tiny'));
    // A step so the trainable weights (gates, added rows) are not their initial values.
    const trainer = new Trainer(model, resolveHyperParameters(profile, 10, { learningRate: 1e-2, warmupSteps: 0, tokensPerStep: 32 }));
    trainer.accumulate(new SyntheticBatches({ batchSize: 1, seqLen: 32, pairsPerRow: 2 }).batch(0));
    trainer.update(0);
    trainer.dispose();
    const out = join(dir, 'hf');
    const result = await exportHf(model, out, { maxShardBytes: 4e6 });
    // 4 MB shards: the ViT and resampler; the 8 MB embedding alone; the decoder layers; the 8 MB head alone; the rest.
    const shards = [1, 2, 3, 4, 5].map((k) => `model-0000${k}-of-00005.safetensors`);
    assert.deepEqual((await readdir(out)).sort(), ['config.json', ...shards, 'model.safetensors.index.json']);
    assert.equal(result.tensors, model.weights.specs.length);
    const index = JSON.parse(await readFile(join(out, 'model.safetensors.index.json'), 'utf8')) as {
      metadata: { total_size: number };
      weight_map: Record<string, string>;
    };
    assert.equal(index.metadata.total_size, 4 * model.weights.specs.reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0));
    assert.equal(index.weight_map['model.embed_tokens.weight'], shards[1]);
    assert.equal(index.weight_map['model.gated_cross_attn_layers.1.alpha_dense'], shards[4]);
    const shard = await openSafetensors(join(out, shards[4]!));
    assert.deepEqual(shard.metadata, { format: 'pt' });
    assert.deepEqual(shard.entries.get('model.gated_cross_attn_layers.1.alpha_dense'), {
      dtype: 'F32',
      shape: [1],
      data_offsets: shard.entries.get('model.gated_cross_attn_layers.1.alpha_dense')!.data_offsets,
    });
    await shard.close();
    const config = JSON.parse(await readFile(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
    assert.deepEqual(
      [
        config.model_type,
        config.architectures,
        config.vocab_size,
        config.additional_vocab_size,
        config.use_resampler,
        config.qk_layer_norms,
        config.vision_embed_dim,
        config.cross_layer_interval,
      ],
      ['idefics', ['IdeficsForVisionText2Text'], 32000, 2, true, true, 32, 2],
    );
    assert.deepEqual(config.vision_config, {
      embed_dim: 32,
      image_size: 224,
      intermediate_size: 64,
      patch_size: 14,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      num_channels: 3,
      hidden_act: 'gelu',
      layer_norm_eps: 1e-5,
    });

    const back = await createInitialModel((await initialModelConfig(modelPreset('tiny'), [out])).config, [out]);
    try {
      for (const spec of model.weights.specs) assert.equal(bits(back.weights.get(spec.name)), bits(model.weights.get(spec.name)), spec.name);
      assert.deepEqual(back.config, model.config);
    } finally {
      back.dispose();
      model.dispose();
    }
    // Nothing is overwritten: a folder holding a checkpoint is refused before anything is written.
    await assert.rejects(
      checkExportLocation(out, '--export-hf'),
      (err) => isM4Error(err, 'E_USAGE') && /already holds config\.json, model-00001-of-00005\.safetensors/.test(err.message),
    );
  });
});

test(
  "--export-hf writes the run's last step; m4data export --run-dir writes the same bytes from the checkpoint; a resume must keep its " + '--init-from',
  async () => {
    await withDir(async (dir) => {
      const run = (extra: Partial<SyntheticRunOptions>) =>
        synthesisedRun(join(dir, 'run'), { profile, ...(extra.resume ? {} : { steps: 2, overrides: { learningRate: 1e-2, tokensPerStep: 32 } }), ...extra });
      const first = await run({ exportHf: join(dir, 'at-end'), stopAt: 1 });
      assert.equal(first.stoppedBy, 'stop-at');
      assert.deepEqual(await readdir(dir).then((names) => names.includes('at-end')), false, 'a run stopped early exports nothing');
      await run({ exportHf: join(dir, 'at-end'), resume: true });
      const cli = await runCli(['export', '--run-dir', join(dir, 'run'), '--output', join(dir, 'cli')], { timeoutMs: 120_000 });
      assert.equal(cli.code, 0, cli.err);
      assert.match(cli.out, /exported step 2 of .*: \d+ tensors, .* in .*model\.safetensors, .*config\.json/);
      for (const file of ['model.safetensors', 'config.json'])
        assert.ok((await readFile(join(dir, 'at-end', file))).equals(await readFile(join(dir, 'cli', file))), file);
      const taken = await runCli(['export', '--run-dir', join(dir, 'run'), '--output', join(dir, 'cli')]);
      assert.equal(taken.code, 2);
      assert.match(taken.err, /--output .* already holds config\.json, model\.safetensors/);
      // The export is a checkpoint --init-from reads; a run resumed with other initial weights is refused.
      await assert.rejects(
        run({ steps: 4, resume: true, initFrom: [join(dir, 'at-end')] }),
        (err) => isM4Error(err, 'E_USAGE') && /weights initialised from \[\], not \[/.test(err.message),
      );
    });
  },
);
