import { M4Error } from '../core/errors.ts';
import { CLIP_MEAN, CLIP_STD, IMAGE_SIZE, type Batch, type BridgeState } from '../trainer-bridge/batch.ts';
import { BOS, EOS, FAKE_TOKEN_AROUND_IMAGE, IMAGE_TOKEN } from '../trainer-bridge/token-layout.ts';
import { freshState } from '../mixer/mixture-state.ts';
import { seededRandom } from './images.ts';

/**
 * A fixed synthetic image-caption set with a real signal, for tests, the benchmark and smoke runs: each image is a flat
 * colour of one of `classes` classes (plus noise), and its caption is that class's fixed words. Rows pack pairs as
 * IDEFICS does (`<s><fake><image><fake> caption </s>` ...), with the bridge's image attention mask.
 */
export interface SyntheticOptions {
  batchSize: number;
  seqLen: number;
  /** Image-caption pairs per row (each is one image slot). */
  pairsPerRow: number;
  /** Caption length in tokens; default fits the row. */
  captionTokens?: number;
  classes?: number;
  seed?: number;
}

const CLASS_COLOURS = [
  [1, 0, 0],
  [0, 1, 0],
  [0, 0, 1],
  [1, 1, 0],
  [0, 1, 1],
  [1, 0, 1],
  [1, 1, 1],
  [0, 0, 0],
];
/** Caption words of class c are ids WORD_BASE + 50c + i: ordinary LLaMA word ids. */
const WORD_BASE = 1000;

export class SyntheticBatches {
  readonly options: Required<SyntheticOptions>;
  /** Batches handed out so far by the current iteration. */
  private emitted = 0;

  constructor(options: SyntheticOptions) {
    const overhead = 5; // <fake><image><fake> ... </s>, and the row's <s>
    const captionTokens = options.captionTokens ?? Math.floor((options.seqLen - 1) / options.pairsPerRow) - overhead;
    if (captionTokens < 1 || 1 + options.pairsPerRow * (captionTokens + overhead - 1) > options.seqLen) {
      throw new M4Error('E_USAGE', 'trainer', `${options.pairsPerRow} pairs of ${captionTokens} caption tokens do not fit ${options.seqLen} tokens`);
    }
    this.options = { classes: 4, seed: 1, captionTokens, ...options };
  }

  /** Batch number `index`: a pure function of the options and the index. */
  batch(index: number): Batch {
    const { batchSize: B, seqLen: L, pairsPerRow: N, captionTokens, classes, seed } = this.options;
    const plane = IMAGE_SIZE * IMAGE_SIZE;
    const inputIds = new Int32Array(B * L);
    const attentionMask = new Int32Array(B * L);
    const labels = new Int32Array(B * L).fill(-100);
    const pixelValues = new Float32Array(B * N * 3 * plane);
    const imageAttentionMask = new Int8Array(B * L * N);
    const random = seededRandom(seed * 1_000_003 + index);
    let tokens = 0;
    for (let b = 0; b < B; b++) {
      let t = 0;
      const put = (id: number, image: number) => {
        inputIds[b * L + t] = id;
        attentionMask[b * L + t] = 1;
        labels[b * L + t] = id;
        if (image >= 0) imageAttentionMask[(b * L + t) * N + image] = 1;
        t++;
      };
      put(BOS, -1);
      for (let n = 0; n < N; n++) {
        const cls = Math.floor(random() * classes);
        const colour = CLASS_COLOURS[cls % CLASS_COLOURS.length]!;
        for (let c = 0; c < 3; c++) {
          const base = ((b * N + n) * 3 + c) * plane;
          for (let i = 0; i < plane; i++) pixelValues[base + i] = (colour[c]! * 0.8 + 0.2 * random() - CLIP_MEAN[c]!) / CLIP_STD[c]!;
        }
        // The opening <fake> attends to the previous image; <image>, the closing <fake> and the caption to this one.
        put(FAKE_TOKEN_AROUND_IMAGE, n - 1);
        put(IMAGE_TOKEN, n);
        put(FAKE_TOKEN_AROUND_IMAGE, n);
        for (let i = 0; i < captionTokens; i++) put(WORD_BASE + 50 * cls + i, n);
        put(EOS, n);
      }
      tokens += t;
    }
    return {
      batchSize: B,
      seqLen: L,
      maxImages: N,
      inputIds,
      attentionMask,
      labels,
      pixelValues,
      imageAttentionMask,
      stats: { tokensBySource: { synthetic: tokens }, imagesBySource: { synthetic: B * N }, paddingTokens: B * L - tokens },
    };
  }

  /** Endless batches from `state` (or the start), counting what was handed out for `state()`. */
  async *batches(state?: BridgeState): AsyncGenerator<Batch> {
    this.emitted = state?.batches ?? 0;
    for (;;) {
      const batch = this.batch(this.emitted);
      this.emitted++;
      yield batch;
    }
  }

  /** The resume point after the last batch handed out, in the bridge's format. */
  state(): BridgeState {
    const { batchSize, seqLen, pairsPerRow } = this.options;
    return {
      format: 'm4data-bridge-state',
      version: 2,
      mixture: freshState({ plan: 'synthetic', seed: this.options.seed, sources: [] }, 0, 1),
      batches: this.emitted,
      packer: { skipUnits: 0, seqLen, batchSize, maxImages: pairsPerRow, partial: [] },
    };
  }
}
