import * as tf from '@tensorflow/tfjs';
import { M4Error } from '../core/errors.ts';
import { IGNORE_INDEX, type Batch } from '../trainer-bridge/batch.ts';
import { decoderLayer, gatedCrossAttention, type SequenceLayout, type VisualContext, type VisualRow } from './decoder.ts';
import { causalBias, MASKED, rmsNorm, rotaryTables, type Rotary } from './layers.ts';
import { lmHeadLoss, type LossSums } from './lm-loss.ts';
import { checkModelConfig, crossLayerIndices, ROPE_THETA, type ModelConfig } from './model-config.ts';
import { matmul } from './ops.ts';
import { resample } from './perceiver.ts';
import { encodeImages } from './vision-encoder.ts';
import { Weights, type InitialWeights } from './weights.ts';

/** Everything of one micro-batch that needs no gradient, computed once outside the tape. */
export interface PreparedBatch {
  rows: number;
  length: number;
  /**
   * Frozen token embeddings [B*L, d], zero on added tokens (a gather: its gradient kernel is missing on wasm, and
   * none is needed), and the added tokens as one-hot rows [B*L, addedTokens] (null when the batch has none): their
   * trained embeddings enter the tape as `addedOneHot @ language.embed_added`, a matmul, whose gradient wasm has.
   */
  embeddings: tf.Tensor2D;
  addedOneHot: tf.Tensor2D | null;
  /** Positions, rotary tables and self-attention masks per row. */
  sequence: SequenceLayout;
  /** `targets[b*L + t]` is `labels[b, t+1]` (next token), IGNORE_INDEX at each row's last position. */
  targets: Int32Array;
  /** The frozen ViT's tokens of the batch's used image slots, [images * (patches + 1), vision.dim]; null without images. */
  features: tf.Tensor2D | null;
  images: number;
  visualRows: (VisualRow | null)[];
  /** Non-padding tokens. */
  tokens: number;
  dispose(): void;
}

/** The ATUM model: frozen ViT and LLaMA-style decoder, trainable resampler and gated cross-attention blocks. */
export class AtumModel {
  readonly config: ModelConfig;
  readonly weights: Weights;
  /** Rotary tables at positions 0..L-1 and the plain causal mask, per sequence length: what rows without padding use. */
  private readonly layouts = new Map<number, { rotary: Rotary; causal: tf.Tensor2D }>();

  private constructor(config: ModelConfig, weights: Weights) {
    this.config = config;
    this.weights = weights;
  }

  /** Seeded weights, replaced by those `initial` gives (see `hf/init-from.ts`). */
  static async create(config: ModelConfig, initial?: InitialWeights): Promise<AtumModel> {
    checkModelConfig(config);
    return new AtumModel(config, await Weights.create(config, initial));
  }

  /** Trainable variables by weight name, in the specs' order. */
  trainableVariables(): Map<string, tf.Variable> {
    return this.weights.trainable;
  }

  /** Embeddings, targets, image features and masks of a batch; call `dispose()` on the result. */
  prepare(batch: Batch): PreparedBatch {
    const { batchSize: rows, seqLen: length } = batch;
    checkBatchShape(batch, this.config.vision.imageSize);
    const { vocabSize: frozenVocab, addedTokens } = this.config.language;
    const vocab = frozenVocab + addedTokens;
    for (const id of batch.inputIds) if (id < 0 || id >= vocab) throw new M4Error('E_INPUT', 'trainer', `input id ${id} outside the vocabulary of ${vocab}`);
    const targets = shiftedTargets(batch);
    let tokens = 0;
    for (const m of batch.attentionMask) tokens += m;

    const { slotsByRow, imageOffsets } = usedImageSlots(batch, 3 * this.config.vision.imageSize ** 2);
    const created: tf.Tensor[] = [];
    const keep = <T extends tf.Tensor>(t: T): T => {
      created.push(t);
      return t;
    };
    const { embeddings, addedOneHot } = this.embed(batch.inputIds);
    keep(embeddings);
    if (addedOneHot) keep(addedOneHot);
    const sequence = this.sequenceLayout(batch, created);
    const features = imageOffsets.length > 0 ? keep(encodeImages(this.weights, this.config, batch.pixelValues, imageOffsets)) : null;
    const visualRows = crossAttentionRows(batch, slotsByRow, this.config.perceiver.latents, keep);
    return {
      rows,
      length,
      embeddings,
      addedOneHot,
      sequence,
      targets,
      features,
      images: imageOffsets.length,
      visualRows,
      tokens,
      dispose: () => tf.dispose(created),
    };
  }

  /**
   * IdeficsDecoupledEmbedding, split at the tape: ids below the frozen vocabulary gather their frozen row, added ids
   * get a zero row here and a one-hot row for `language.embed_added` (x + 0 and 1 * e + 0 are exact in float32, so
   * the sum equals transformers' overwrite).
   */
  private embed(inputIds: Int32Array): { embeddings: tf.Tensor2D; addedOneHot: tf.Tensor2D | null } {
    const { vocabSize: frozenVocab, addedTokens } = this.config.language;
    const frozenIds = new Int32Array(inputIds.length);
    const keepRow = new Float32Array(inputIds.length);
    const oneHot = new Float32Array(inputIds.length * addedTokens);
    let added = 0;
    inputIds.forEach((id, t) => {
      if (id < frozenVocab) {
        frozenIds[t] = id;
        keepRow[t] = 1;
      } else {
        oneHot[t * addedTokens + id - frozenVocab] = 1;
        added++;
      }
    });
    const embeddings = tf.tidy((): tf.Tensor2D => {
      const rows = tf.gather(this.weights.get('language.embed'), tf.tensor1d(frozenIds, 'int32')) as tf.Tensor2D;
      return added === 0 ? rows : tf.mul(rows, tf.tensor2d(keepRow, [inputIds.length, 1]));
    });
    return { embeddings, addedOneHot: added === 0 ? null : tf.tensor2d(oneHot, [inputIds.length, addedTokens]) };
  }

  /**
   * Positions as transformers makes them from the attention mask (`cumsum(mask) - 1`, padding at 1) and the
   * self-attention bias of each row (causal, padding keys masked). A row without padding shares the cached tables.
   */
  private sequenceLayout(batch: Batch, created: tf.Tensor[]): SequenceLayout {
    const { batchSize: rows, seqLen: length } = batch;
    const shared = this.layout(length);
    const perRow = Array.from({ length: rows }, (_, b) => {
      const mask = batch.attentionMask.subarray(b * length, (b + 1) * length);
      if (mask.every((m) => m === 1)) return { rotary: shared.rotary, bias: shared.causal };
      const positions = new Int32Array(length);
      let seen = 0;
      mask.forEach((m, t) => {
        seen += m;
        positions[t] = m === 1 ? seen - 1 : 1;
      });
      const at = tf.tensor1d(positions, 'int32');
      const row = { rotary: { cos: tf.gather(shared.rotary.cos, at), sin: tf.gather(shared.rotary.sin, at) }, bias: causalBias(length, mask) };
      at.dispose();
      created.push(row.rotary.cos, row.rotary.sin, row.bias);
      return row;
    });
    return { rows, length, perRow };
  }

  /**
   * The summed training objective of a prepared batch (`sum over label tokens of CE + zWeight * lse^2`), adding the
   * sums to `sums`. Call inside a gradient function. `crossAttention: false` runs the frozen language model alone.
   */
  objective(prepared: PreparedBatch, sums: LossSums, options: { zWeight: number; crossAttention?: boolean }): tf.Scalar {
    const head = { frozen: this.weights.matrix('language.lm_head'), added: this.weights.get('language.lm_head_added') as tf.Tensor2D };
    return lmHeadLoss(this.hidden(prepared, options.crossAttention ?? true), prepared.targets, head, options.zWeight, sums);
  }

  /** The logits [B*L, vocabSize + addedTokens] of a prepared batch, as `IdeficsForVisionText2Text` returns them. */
  logits(prepared: PreparedBatch): tf.Tensor2D {
    return tf.tidy((): tf.Tensor2D => {
      const h = this.hidden(prepared, true);
      return tf.concat(
        [tf.matMul(h, this.weights.get('language.lm_head') as tf.Tensor2D), tf.matMul(h, this.weights.get('language.lm_head_added') as tf.Tensor2D)],
        1,
      ) as tf.Tensor2D;
    });
  }

  /** The decoder's last hidden states after the final RMSNorm, [B*L, d]. */
  private hidden(prepared: PreparedBatch, withCross: boolean): tf.Tensor2D {
    let visual: VisualContext | null = null;
    if (withCross && prepared.features) {
      visual = { latents: resample(this.weights, this.config, prepared.features, prepared.images), rows: prepared.visualRows };
    }
    const crossAt = new Set(withCross ? crossLayerIndices(this.config) : []);
    let h = prepared.embeddings;
    if (prepared.addedOneHot) h = tf.add(h, matmul(prepared.addedOneHot, this.weights.get('language.embed_added') as tf.Tensor2D));
    for (let layer = 0; layer < this.config.language.layers; layer++) {
      if (crossAt.has(layer)) h = gatedCrossAttention(this.weights, this.config, layer, h, prepared.sequence, visual);
      h = decoderLayer(this.weights, this.config, layer, h, prepared.sequence);
    }
    return rmsNorm(h, this.weights.get('language.final_norm') as tf.Tensor1D, this.config.language.rmsNormEps);
  }

  private layout(length: number): { rotary: Rotary; causal: tf.Tensor2D } {
    let cached = this.layouts.get(length);
    if (!cached) {
      const l = this.config.language;
      // Kept: a first call inside a scope would dispose them.
      const rotary = rotaryTables(length, l.dim / l.heads, ROPE_THETA);
      cached = { rotary: { cos: tf.keep(rotary.cos), sin: tf.keep(rotary.sin) }, causal: tf.keep(causalBias(length)) };
      this.layouts.set(length, cached);
    }
    return cached;
  }

  dispose(): void {
    for (const { rotary, causal } of this.layouts.values()) tf.dispose([rotary.cos, rotary.sin, causal]);
    this.layouts.clear();
    this.weights.dispose();
  }
}

/** Array lengths must match the batch's B, L and N (a bridge bug shows here, not as a wrong tensor shape later). */
function checkBatchShape(batch: Batch, imageSize: number): void {
  const { batchSize: B, seqLen: L, maxImages: N } = batch;
  const expected: [string, number, number][] = [
    ['inputIds', batch.inputIds.length, B * L],
    ['labels', batch.labels.length, B * L],
    ['attentionMask', batch.attentionMask.length, B * L],
    ['imageAttentionMask', batch.imageAttentionMask.length, B * L * N],
    ['pixelValues', batch.pixelValues.length, B * N * 3 * imageSize * imageSize],
  ];
  for (const [field, actual, wanted] of expected) {
    if (actual !== wanted)
      throw new M4Error('E_INPUT', 'trainer', `batch ${field} holds ${actual} values, its shape [B=${B}, L=${L}, N=${N}] needs ${wanted}`, { field });
  }
}

/** The labels shifted by one: position t predicts the label of t + 1; the last position predicts nothing. */
function shiftedTargets(batch: Batch): Int32Array {
  const { batchSize: rows, seqLen: length } = batch;
  const targets = new Int32Array(rows * length).fill(IGNORE_INDEX);
  for (let b = 0; b < rows; b++) for (let t = 0; t + 1 < length; t++) targets[b * length + t] = batch.labels[b * length + t + 1]!;
  return targets;
}

/**
 * The image slots each row uses (some token attends to them) and their pixels' offsets in `pixelValues`, in order:
 * unused slots are never encoded.
 */
function usedImageSlots(batch: Batch, pixelsPerImage: number): { slotsByRow: number[][]; imageOffsets: number[] } {
  const { batchSize: rows, seqLen: length, maxImages } = batch;
  const imageOffsets: number[] = [];
  const slotsByRow: number[][] = [];
  for (let b = 0; b < rows; b++) {
    const slots: number[] = [];
    for (let n = 0; n < maxImages; n++) {
      for (let t = 0; t < length; t++) {
        if (batch.imageAttentionMask[(b * length + t) * maxImages + n] === 1) {
          slots.push(n);
          imageOffsets.push((b * maxImages + n) * pixelsPerImage);
          break;
        }
      }
    }
    slotsByRow.push(slots);
  }
  return { slotsByRow, imageOffsets };
}

/**
 * The image attention mask as each row's cross-attention sees it: an additive bias [L, images x latents] (0 where the
 * token attends to the image's latents, MASKED elsewhere) and the per-token gate (1 when it attends to any image).
 */
function crossAttentionRows(batch: Batch, slotsByRow: number[][], latents: number, keep: <T extends tf.Tensor>(t: T) => T): (VisualRow | null)[] {
  const { seqLen: length, maxImages } = batch;
  let firstImage = 0;
  return slotsByRow.map((slots, b): VisualRow | null => {
    if (slots.length === 0) return null;
    const bias = new Float32Array(length * slots.length * latents).fill(MASKED);
    const hasImage = new Float32Array(length);
    for (let t = 0; t < length; t++) {
      slots.forEach((slot, j) => {
        if (batch.imageAttentionMask[(b * length + t) * maxImages + slot] !== 1) return;
        bias.fill(0, (t * slots.length + j) * latents, (t * slots.length + j + 1) * latents);
        hasImage[t] = 1;
      });
    }
    const row = {
      firstImage,
      images: slots.length,
      bias: keep(tf.tensor2d(bias, [length, slots.length * latents])),
      hasImage: keep(tf.tensor2d(hasImage, [length, 1])),
    };
    firstImage += slots.length;
    return row;
  });
}
