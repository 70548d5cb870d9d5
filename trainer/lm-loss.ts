import * as tf from '@tensorflow/tfjs';
import { M4Error } from '../core/errors.ts';
import { IGNORE_INDEX } from '../trainer-bridge/batch.ts';
import { customOp, type FrozenMatrix } from './ops.ts';

/** What one call adds up over its label tokens; divide by `count` for means. */
export interface LossSums {
  /** Sum of next-token cross-entropies (nats). */
  crossEntropy: number;
  /** Sum of logsumexp(logits)^2 (PaLM's z-loss before its weight). */
  zLoss: number;
  /** Label tokens (targets other than IGNORE_INDEX). */
  count: number;
  /** When given ([T]): each row's cross-entropy, NaN on ignored rows (to see which tokens a change reaches). */
  perRow?: Float64Array;
}

/** Rows of logits alive at once: 256 x 32,002 floats is 33 MB. */
const DEFAULT_CHUNK_ROWS = 256;

/**
 * The frozen LM head, cross-entropy and z-loss fused, in row chunks: `sum over label rows of CE + zWeight * lse^2`.
 * The loss is the last node of the graph, so its gradient with respect to the logits is known in the forward pass
 * (`softmax * (1 + 2 zWeight lse) - onehot`); it is turned into the gradient for `hidden` there (one matmul with the
 * kept transpose of the head) and only that [T, d] tensor waits for the backward pass, never the [T, V] logits.
 * `hidden` is [T, d]; `targets[t]` is the id row t must predict, or IGNORE_INDEX.
 */
export function lmHeadLoss(
  hidden: tf.Tensor2D,
  targets: Int32Array,
  head: FrozenMatrix,
  zWeight: number,
  sums: LossSums,
  chunkRows = DEFAULT_CHUNK_ROWS,
): tf.Scalar {
  const [rows, dim] = hidden.shape;
  const vocab = head.w.shape[1];
  if (targets.length !== rows) throw new Error(`lmHeadLoss: ${targets.length} targets for ${rows} rows`);
  const op = customOp<tf.Scalar>(([x], save) => {
    let objective = 0;
    const gradChunks: tf.Tensor2D[] = [];
    for (let start = 0; start < rows; start += chunkRows) {
      const n = Math.min(chunkRows, rows - start);
      const chunkTargets = targets.subarray(start, start + n);
      if (chunkTargets.every((t) => t === IGNORE_INDEX)) {
        sums.perRow?.fill(NaN, start, start + n);
        gradChunks.push(tf.zeros([n, dim]));
        continue;
      }
      const logitsTensor = tf.tidy(() => tf.matMul(tf.slice(x! as tf.Tensor2D, [start, 0], [n, dim]), head.w));
      const logits = logitsTensor.dataSync() as Float32Array;
      logitsTensor.dispose();
      // In place: logits become dLoss/dlogits.
      for (let r = 0; r < n; r++) {
        const target = chunkTargets[r]!;
        const row = logits.subarray(r * vocab, (r + 1) * vocab);
        if (target === IGNORE_INDEX) {
          if (sums.perRow) sums.perRow[start + r] = NaN;
          row.fill(0);
          continue;
        }
        if (target < 0 || target >= vocab) throw new M4Error('E_INPUT', 'trainer', `label ${target} outside the vocabulary of ${vocab} (and not ${IGNORE_INDEX})`);
        const targetLogit = row[target]!;
        let max = -Infinity;
        for (let j = 0; j < vocab; j++) if (row[j]! > max) max = row[j]!;
        let sum = 0;
        for (let j = 0; j < vocab; j++) {
          const e = Math.exp(row[j]! - max);
          row[j] = e;
          sum += e;
        }
        const lse = Math.log(sum) + max;
        const ce = lse - targetLogit;
        sums.crossEntropy += ce;
        if (sums.perRow) sums.perRow[start + r] = ce;
        sums.zLoss += lse * lse;
        sums.count += 1;
        objective += ce + zWeight * lse * lse;
        const scale = (1 + 2 * zWeight * lse) / sum;
        for (let j = 0; j < vocab; j++) row[j]! *= scale;
        row[target]! -= 1;
      }
      const dLogits = tf.tensor2d(logits, [n, vocab]);
      gradChunks.push(tf.matMul(dLogits, head.wt));
      dLogits.dispose();
    }
    const grad = gradChunks.length === 1 ? gradChunks[0]! : tf.concat(gradChunks, 0);
    if (gradChunks.length > 1) tf.dispose(gradChunks);
    save([grad]);
    return { value: tf.scalar(objective), gradFunc: (dy, saved) => tf.mul(saved[0]!, dy) };
  });
  return op(hidden);
}
