import * as tf from '@tensorflow/tfjs';
import { M4Error } from '../core/errors.ts';
import { IGNORE_INDEX, type Batch } from '../trainer-bridge/batch.ts';
import { decoderLayer, gatedCrossAttention, type SequenceLayout, type VisualContext, type VisualRow } from './decoder.ts';
import { causalBias, MASKED, rmsNorm, rotaryTables } from './layers.ts';
import { lmHeadLoss, type LossSums } from './lm-loss.ts';
import { checkModelConfig, crossLayerIndices, type ModelConfig } from './model-config.ts';
import { resample } from './perceiver.ts';
import { encodeImages } from './vision-encoder.ts';
import { Weights } from './weights.ts';

/** Everything of one micro-batch that needs no gradient, computed once outside the tape. */
export interface PreparedBatch {
  rows: number;
  length: number;
  /** Frozen token embeddings [B*L, d] (a gather: its gradient kernel is missing on wasm, and none is needed). */
  embeddings: tf.Tensor2D;
  /** `targets[b*L + t]` is `labels[b, t+1]` (next token), IGNORE_INDEX at each row's last position. */
  targets: Int32Array;
  /** Frozen ViT features of the batch's used image slots, [images * patches, vision.dim]; null without images. */
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
  /** Names of frozen weights read from safetensors files (the rest are seeded random). */
  readonly loadedFrozen: string[];
  private readonly layouts = new Map<number, { rotary: SequenceLayout['rotary']; causal: tf.Tensor2D }>();

  private constructor(config: ModelConfig, weights: Weights, loaded: string[]) {
    this.config = config;
    this.weights = weights;
    this.loadedFrozen = loaded;
  }

  static async create(config: ModelConfig, options: { frozenWeights?: readonly string[] } = {}): Promise<AtumModel> {
    checkModelConfig(config);
    const { weights, loaded } = await Weights.create(config, options.frozenWeights);
    return new AtumModel(config, weights, loaded);
  }

  /** Trainable variables by weight name, in the specs' order. */
  trainableVariables(): Map<string, tf.Variable> {
    return this.weights.trainable;
  }

  /** Embeddings, targets, image features and masks of a batch; call `dispose()` on the result. */
  prepare(batch: Batch): PreparedBatch {
    const { batchSize: rows, seqLen: length, maxImages } = batch;
    checkBatchShape(batch, this.config.vision.imageSize);
    const vocab = this.config.language.vocabSize;
    for (const id of batch.inputIds) if (id < 0 || id >= vocab) throw new M4Error('E_INPUT', 'trainer', `input id ${id} outside the vocabulary of ${vocab}`);
    const targets = new Int32Array(rows * length).fill(IGNORE_INDEX);
    for (let b = 0; b < rows; b++) for (let t = 0; t + 1 < length; t++) targets[b * length + t] = batch.labels[b * length + t + 1]!;
    let tokens = 0;
    for (const m of batch.attentionMask) tokens += m;

    // An image slot is used when some token attends to it; unused slots are never encoded.
    const imageOffsets: number[] = [];
    const slotsByRow: number[][] = [];
    const pixelsPerImage = 3 * this.config.vision.imageSize ** 2;
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
    const latents = this.config.perceiver.latents;
    const created: tf.Tensor[] = [];
    const keep = <T extends tf.Tensor>(t: T): T => {
      created.push(t);
      return t;
    };
    const embeddings = keep(tf.tidy(() => tf.gather(this.weights.get('language.embed'), tf.tensor1d(batch.inputIds, 'int32')) as tf.Tensor2D));
    const features = imageOffsets.length > 0 ? keep(encodeImages(this.weights, this.config, batch.pixelValues, imageOffsets)) : null;
    let firstImage = 0;
    const visualRows = slotsByRow.map((slots, b): VisualRow | null => {
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
    return { rows, length, embeddings, targets, features, images: imageOffsets.length, visualRows, tokens, dispose: () => tf.dispose(created) };
  }

  /**
   * The summed training objective of a prepared batch (`sum over label tokens of CE + zWeight * lse^2`), adding the
   * sums to `sums`. Call inside a gradient function. `crossAttention: false` runs the frozen language model alone.
   */
  objective(prepared: PreparedBatch, sums: LossSums, options: { zWeight: number; crossAttention?: boolean }): tf.Scalar {
    const seq = this.layout(prepared.rows, prepared.length);
    const withCross = options.crossAttention ?? true;
    let visual: VisualContext | null = null;
    if (withCross && prepared.features) {
      visual = { latents: resample(this.weights, this.config, prepared.features, prepared.images), rows: prepared.visualRows };
    }
    const crossAt = new Set(withCross ? crossLayerIndices(this.config) : []);
    let h = prepared.embeddings;
    for (let layer = 0; layer < this.config.language.layers; layer++) {
      if (crossAt.has(layer)) h = gatedCrossAttention(this.weights, this.config, layer, h, seq, visual);
      h = decoderLayer(this.weights, this.config, layer, h, seq);
    }
    const normed = rmsNorm(h, this.weights.get('language.final_norm') as tf.Tensor1D);
    return lmHeadLoss(normed, prepared.targets, this.weights.matrix('language.lm_head'), options.zWeight, sums);
  }

  private layout(rows: number, length: number): SequenceLayout {
    let cached = this.layouts.get(length);
    if (!cached) {
      const l = this.config.language;
      // Kept: first made inside a gradient function's scope, which would dispose them.
      const rotary = rotaryTables(length, l.dim / l.heads, l.ropeTheta);
      cached = { rotary: { cos: tf.keep(rotary.cos), sin: tf.keep(rotary.sin) }, causal: tf.keep(causalBias(length)) };
      this.layouts.set(length, cached);
    }
    return { rows, length, ...cached };
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
    if (actual !== wanted) throw new M4Error('E_INPUT', 'trainer', `batch ${field} holds ${actual} values, its shape [B=${B}, L=${L}, N=${N}] needs ${wanted}`, { field });
  }
}
