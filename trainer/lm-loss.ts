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
 *
 * The softmax runs in the backend (XNNPACK's on wasm: 5 times faster than a loop of Math.exp over 32,002 columns, which
 * took a fifth of a tiny model's step); only a row's largest logit, its largest probability and its target's logit come
 * back to JavaScript. lse is `max - log(largest probability)`, a probability of at least 1 / V, so the log stays exact
 * to float32's precision.
 */
export function lmHeadLoss(hidden: tf.Tensor2D, targets: Int32Array, head: LmHead, zWeight: number, sums: LossSums, chunkRows = DEFAULT_CHUNK_ROWS): tf.Scalar {
  const [rows, dim] = hidden.shape;
  const frozenVocab = head.frozen.w.shape[1];
  const added = head.added.shape[1];
  const vocab = frozenVocab + added;
  if (targets.length !== rows) throw new Error(`lmHeadLoss: ${targets.length} targets for ${rows} rows`);
  for (const target of targets)
    if (target !== IGNORE_INDEX && (target < 0 || target >= vocab))
      throw new M4Error('E_INPUT', 'trainer', `label ${target} outside the vocabulary of ${vocab} (and not ${IGNORE_INDEX})`);
  const op = customOp<tf.Scalar>(([x, addedColumns], save) => {
    let objective = 0;
    const gradChunks: tf.Tensor2D[] = [];
    let gradAdded: tf.Tensor2D = tf.zeros([dim, added]);
    // Both heads' transposes stacked, [V + A, d]: dLogits times it is the gradient for `hidden`.
    const headT = tf.concat([head.frozen.wt, tf.transpose(addedColumns as tf.Tensor2D)], 0);
    for (let start = 0; start < rows; start += chunkRows) {
      const n = Math.min(chunkRows, rows - start);
      const chunkTargets = targets.subarray(start, start + n);
      if (chunkTargets.every((t) => t === IGNORE_INDEX)) {
        sums.perRow?.fill(NaN, start, start + n);
        gradChunks.push(tf.zeros([n, dim]));
        continue;
      }
      const chunk = tf.slice(x! as tf.Tensor2D, [start, 0], [n, dim]);
      // The frozen logits, then the added ones (ids V..V+A-1): [n, V + A].
      const logits = tf.tidy(() => tf.concat([tf.matMul(chunk, head.frozen.w), tf.matMul(chunk, addedColumns as tf.Tensor2D)], 1));
      const probs = tf.softmax(logits);
      // Per row, in one pass over it: the place of its largest logit; then that logit, its probability, and the
      // target's logit (an ignored row picks column 0 and is skipped below), gathered from the flattened [n * (V + A)].
      const picks = Int32Array.from(chunkTargets, (t, r) => r * vocab + (t === IGNORE_INDEX ? 0 : t));
      const stats = tf.tidy(() => {
        const flat = tf.reshape(logits, [-1]);
        const top = tf.add(tf.argMax(logits, 1), tf.mul(tf.range(0, n, 1, 'int32'), tf.scalar(vocab, 'int32')));
        return [tf.gather(flat, top), tf.gather(tf.reshape(probs, [-1]), top), tf.gather(flat, tf.tensor1d(picks, 'int32'))];
      });
      const [rowMax, probMax, picked] = stats.map((t) => t.dataSync()) as [Float32Array, Float32Array, Float32Array];
      tf.dispose([...stats, logits]);
      // dLoss/dlogits of a row is its softmax times `scale`, less 1 at its target; 0 for an ignored row.
      const scale = new Float32Array(n);
      // (row, target) of each label row: where the 1 of the one-hot goes (scattered, as wasm's oneHot gives int32 bits
      // whatever dtype it is asked for).
      const hits: number[] = [];
      for (let r = 0; r < n; r++) {
        if (chunkTargets[r] === IGNORE_INDEX) {
          if (sums.perRow) sums.perRow[start + r] = NaN;
          continue;
        }
        const lse = rowMax[r]! - Math.log(probMax[r]!);
        const ce = lse - picked[r]!;
        sums.crossEntropy += ce;
        if (sums.perRow) sums.perRow[start + r] = ce;
        sums.zLoss += lse * lse;
        sums.count += 1;
        objective += ce + zWeight * lse * lse;
        scale[r] = 1 + 2 * zWeight * lse;
        hits.push(r, chunkTargets[r]!);
      }
      const dLogits = tf.tidy(() =>
        tf.sub(
          tf.mul(probs, tf.tensor2d(scale, [n, 1])),
          tf.scatterND(tf.tensor2d(hits, [hits.length / 2, 2], 'int32'), tf.ones([hits.length / 2]), [n, vocab]),
        ),
      ) as tf.Tensor2D;
      probs.dispose();
      gradChunks.push(tf.matMul(dLogits, headT));
      const previous = gradAdded;
      gradAdded = tf.tidy(() => tf.add(previous, tf.matMul(tf.transpose(chunk), tf.slice(dLogits, [0, frozenVocab], [n, added]))));
      tf.dispose([previous, dLogits, chunk]);
    }
    headT.dispose();
    const grad = gradChunks.length === 1 ? gradChunks[0]! : tf.concat(gradChunks, 0);
    if (gradChunks.length > 1) tf.dispose(gradChunks);
    save([grad, gradAdded]);
    return { value: tf.scalar(objective), gradFunc: (dy, [gradX, gradColumns]) => [tf.mul(gradX!, dy), tf.mul(gradColumns!, dy)] };
  });
  return op(hidden, head.added);
}
