import * as tf from '@tensorflow/tfjs';

/**
 * Matmuls with hand-written gradients. TensorFlow.js differentiates `matMul` into matmuls with transpose flags, which
 * the WebAssembly backend runs 10-40x slower than plain 2-D ones; these transpose explicitly (cheap) and multiply plainly.
 * Each is checked against finite differences in test/trainer-grads.test.ts.
 */

type GradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor | tf.Tensor[];

/** `tf.customGrad` with the inputs and the save function apart, typed. */
export function customOp<T extends tf.Tensor>(
  f: (inputs: tf.Tensor[], save: tf.GradSaveFunc) => { value: T; gradFunc: GradFunc },
): (...inputs: tf.Tensor[]) => T {
  return tf.customGrad<T>((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    return f(args.slice(0, -1) as tf.Tensor[], save);
  });
}

/** `a @ b` ([m,k] x [k,n]), both on the tape. */
export const matmul = customOp<tf.Tensor2D>(([a, b], save) => {
  save([a!, b!]);
  return {
    value: tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D),
    gradFunc: (dy, [sa, sb]) => [tf.matMul(dy as tf.Tensor2D, tf.transpose(sb as tf.Tensor2D)), tf.matMul(tf.transpose(sa as tf.Tensor2D), dy as tf.Tensor2D)],
  };
}) as (a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor2D;

/** `a @ b^T` ([m,k] x [n,k]): attention scores. */
export const matmulNT = customOp<tf.Tensor2D>(([a, b], save) => {
  save([a!, b!]);
  return {
    value: tf.matMul(a as tf.Tensor2D, tf.transpose(b as tf.Tensor2D)),
    gradFunc: (dy, [sa, sb]) => [tf.matMul(dy as tf.Tensor2D, sb as tf.Tensor2D), tf.matMul(tf.transpose(dy as tf.Tensor2D), sa as tf.Tensor2D)],
  };
}) as (a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor2D;

/** A frozen weight with its transpose kept beside it, so the backward pass never transposes it again. */
export interface FrozenMatrix {
  w: tf.Tensor2D;
  wt: tf.Tensor2D;
}

export function frozenMatrix(w: tf.Tensor2D): FrozenMatrix {
  return { w, wt: tf.keep(tf.transpose(w)) };
}

/** `x @ W` for a frozen W: only x gets a gradient (`dy @ W^T`); no weight gradient is ever computed. */
export function frozenLinear(x: tf.Tensor2D, weight: FrozenMatrix): tf.Tensor2D {
  const op = customOp<tf.Tensor2D>(([input]) => ({
    value: tf.matMul(input as tf.Tensor2D, weight.w),
    gradFunc: (dy) => tf.matMul(dy as tf.Tensor2D, weight.wt),
  }));
  return op(x);
}
