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

/** Rows of logits alive at once: 256 x 32,000 floats is 33 MB. */
const DEFAULT_CHUNK_ROWS = 256;

/**
 * IDEFICS's decoupled LM head (`IdeficsDecoupledLinear`): the frozen [d, V] LLaMA head, and the trained [d, A]
 * columns of the added tokens, whose logits come after the frozen ones (ids V..V+A-1).
 */
export interface LmHead {
  frozen: FrozenMatrix;
  added: tf.Tensor2D;
}

/**
 * The LM head, cross-entropy and z-loss fused, in row chunks: `sum over label rows of CE + zWeight * lse^2`.
 * The loss is the last node of the graph, so its gradient with respect to the logits is known in the forward pass
 * (`softmax * (1 + 2 zWeight lse) - onehot`); it is turned into the gradients for `hidden` and for the added columns
 * there (matmuls with the kept transpose of the frozen head, and with the added columns) and only those wait for the
 * backward pass, never the [T, V] logits. `hidden` is [T, d]; `targets[t]` is the id row t must predict, or IGNORE_INDEX.
 */
export function lmHeadLoss(hidden: tf.Tensor2D, targets: Int32Array, head: LmHead, zWeight: number, sums: LossSums, chunkRows = DEFAULT_CHUNK_ROWS): tf.Scalar {
  const [rows, dim] = hidden.shape;
  const frozenVocab = head.frozen.w.shape[1];
  const added = head.added.shape[1];
  const vocab = frozenVocab + added;
  if (targets.length !== rows) throw new Error(`lmHeadLoss: ${targets.length} targets for ${rows} rows`);
  const op = customOp<tf.Scalar>(([x, addedColumns], save) => {
    let objective = 0;
    const gradChunks: tf.Tensor2D[] = [];
    let gradAdded: tf.Tensor2D = tf.zeros([dim, added]);
    for (let start = 0; start < rows; start += chunkRows) {
      const n = Math.min(chunkRows, rows - start);
      const chunkTargets = targets.subarray(start, start + n);
      if (chunkTargets.every((t) => t === IGNORE_INDEX)) {
        sums.perRow?.fill(NaN, start, start + n);
        gradChunks.push(tf.zeros([n, dim]));
        continue;
      }
      const chunk = tf.slice(x! as tf.Tensor2D, [start, 0], [n, dim]);
      const logitsTensor = tf.matMul(chunk, head.frozen.w);
      const addedTensor = tf.matMul(chunk, addedColumns as tf.Tensor2D);
      // In place: logits become dLoss/dlogits.
      const logits = logitsTensor.dataSync() as Float32Array;
      const addedLogits = addedTensor.dataSync() as Float32Array;
      tf.dispose([logitsTensor, addedTensor]);
      for (let r = 0; r < n; r++) {
        const target = chunkTargets[r]!;
        const row = logits.subarray(r * frozenVocab, (r + 1) * frozenVocab);
        const rowAdded = addedLogits.subarray(r * added, (r + 1) * added);
        if (target === IGNORE_INDEX) {
          if (sums.perRow) sums.perRow[start + r] = NaN;
          row.fill(0);
          rowAdded.fill(0);
          continue;
        }
        if (target < 0 || target >= vocab)
          throw new M4Error('E_INPUT', 'trainer', `label ${target} outside the vocabulary of ${vocab} (and not ${IGNORE_INDEX})`);
        const targetLogit = target < frozenVocab ? row[target]! : rowAdded[target - frozenVocab]!;
        let max = -Infinity;
        for (let j = 0; j < frozenVocab; j++) if (row[j]! > max) max = row[j]!;
        for (let j = 0; j < added; j++) if (rowAdded[j]! > max) max = rowAdded[j]!;
        let sum = 0;
        for (let j = 0; j < frozenVocab; j++) {
          const e = Math.exp(row[j]! - max);
          row[j] = e;
          sum += e;
        }
        for (let j = 0; j < added; j++) {
          const e = Math.exp(rowAdded[j]! - max);
          rowAdded[j] = e;
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
        for (let j = 0; j < frozenVocab; j++) row[j]! *= scale;
        for (let j = 0; j < added; j++) rowAdded[j]! *= scale;
        if (target < frozenVocab) row[target]! -= 1;
        else rowAdded[target - frozenVocab]! -= 1;
      }
      const dLogits = tf.tensor2d(logits, [n, frozenVocab]);
      const dAdded = tf.tensor2d(addedLogits, [n, added]);
      gradChunks.push(tf.tidy(() => tf.add(tf.matMul(dLogits, head.frozen.wt), tf.matMul(dAdded, tf.transpose(addedColumns as tf.Tensor2D)))));
      const previous = gradAdded;
      gradAdded = tf.tidy(() => tf.add(previous, tf.matMul(tf.transpose(chunk), dAdded)));
      tf.dispose([previous, dLogits, dAdded, chunk]);
    }
    const grad = gradChunks.length === 1 ? gradChunks[0]! : tf.concat(gradChunks, 0);
    if (gradChunks.length > 1) tf.dispose(gradChunks);
    save([grad, gradAdded]);
    return { value: tf.scalar(objective), gradFunc: (dy, [gradX, gradColumns]) => [tf.mul(gradX!, dy), tf.mul(gradColumns!, dy)] };
  });
  return op(hidden, head.added);
}
