import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../trainer/backend.ts';
import type { LossSums } from '../trainer/lm-loss.ts';
import { crossLayerIndices, modelPreset } from '../trainer/model-config.ts';
import { AtumModel } from '../trainer/model.ts';
import { SyntheticBatches } from '../sandbox/synthetic-batches.ts';
import { IMAGE_TOKEN } from '../trainer-bridge/token-layout.ts';
import type { Batch } from '../trainer-bridge/batch.ts';

await selectBackend('wasm');
const config = modelPreset('tiny');
const model = await AtumModel.create(config);
const data = new SyntheticBatches({ batchSize: 2, seqLen: 32, pairsPerRow: 2 });

/** Per-position cross-entropies ([B*L], NaN where ignored) and the summed objective. */
function losses(batch: Batch, crossAttention = true): { perRow: Float64Array; sums: LossSums; objective: number } {
  const prepared = model.prepare(batch);
  const sums: LossSums = { crossEntropy: 0, zLoss: 0, count: 0, perRow: new Float64Array(batch.batchSize * batch.seqLen) };
  const objective = tf.tidy(() => model.objective(prepared, sums, { zWeight: 1e-3, crossAttention }).dataSync()[0]!);
  prepared.dispose();
  return { perRow: sums.perRow!, sums, objective };
}

function setGates(value: number): void {
  for (const layer of crossLayerIndices(config)) {
    for (const gate of ['gate_attn', 'gate_ffn']) model.weights.trainable.get(`cross.${layer}.${gate}`)!.assign(tf.scalar(value));
  }
}

test('gates at zero: the untrained model has exactly the frozen language model loss on the same batch', () => {
  const batch = data.batch(0);
  const full = losses(batch);
  const frozenOnly = losses(batch, false);
  assert.equal(full.sums.crossEntropy, frozenOnly.sums.crossEntropy);
  assert.equal(full.sums.zLoss, frozenOnly.sums.zLoss);
  assert.equal(full.objective, frozenOnly.objective);
  // And the comparison can tell: with open gates, the images change the loss.
  setGates(0.5);
  assert.notEqual(losses(batch).sums.crossEntropy, frozenOnly.sums.crossEntropy);
  setGates(0);
});

test('image attention mask: changing an image changes the loss only at positions that attend to it or come after one that does', () => {
  setGates(0.5);
  const batch = data.batch(1);
  const { batchSize: B, seqLen: L, maxImages: N } = batch;
  const before = losses(batch).perRow;
  // Replace row 0's second image (slot 1) with noise.
  const changed = { ...batch, pixelValues: batch.pixelValues.slice() };
  const plane = 3 * 224 * 224;
  for (let i = 0; i < plane; i++) changed.pixelValues[(0 * N + 1) * plane + i] = Math.sin(i);
  const after = losses(changed).perRow;
  const firstAttending = Array.from({ length: L }, (_, t) => t).find((t) => batch.imageAttentionMask[(0 * L + t) * N + 1] === 1)!;
  assert.equal(batch.inputIds[firstAttending], IMAGE_TOKEN);
  let changedAfter = 0;
  let labelledAfter = 0;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < L; t++) {
      const i = b * L + t;
      if (Number.isNaN(before[i]!)) continue;
      if (b === 0 && t >= firstAttending) {
        labelledAfter++;
        if (before[i] !== after[i]) changedAfter++;
      } else {
        assert.equal(after[i], before[i], `row ${b} position ${t} changed`);
      }
    }
  }
  // Every position from the image on sees it (caption tokens attend to it; later ones through causal attention).
  assert.ok(labelledAfter > 5);
  assert.equal(changedAfter, labelledAfter);
  setGates(0);
});
