import * as tf from '@tensorflow/tfjs';

/**
 * Adam with decoupled weight decay (AdamW, PyTorch's order): `p *= 1 - lr * wd` on decayed weights, then
 * `p -= lr * mhat / (sqrt(vhat) + eps)`. State exists for trainable weights only.
 */
export class AdamW {
  readonly m = new Map<string, tf.Variable>();
  readonly v = new Map<string, tf.Variable>();
  /** Updates applied so far (Adam's t before the next update). */
  updates = 0;
  private readonly params: Map<string, tf.Variable>;
  private readonly decayed: Set<string>;
  private readonly betas: [number, number];
  private readonly epsilon: number;

  constructor(params: Map<string, tf.Variable>, options: { betas: [number, number]; epsilon: number; decayed: Set<string> }) {
    this.params = params;
    this.betas = options.betas;
    this.epsilon = options.epsilon;
    this.decayed = options.decayed;
    for (const [name, p] of params) {
      const zeros = tf.zerosLike(p);
      // A variable shares its initial tensor's data; the initial tensor itself must still be disposed.
      this.m.set(name, tf.variable(zeros, false));
      this.v.set(name, tf.variable(zeros, false));
      zeros.dispose();
    }
  }

  /** One update with gradients by weight name (every trainable weight must have one). */
  apply(grads: Map<string, tf.Tensor>, learningRate: number, weightDecay: number): void {
    const [b1, b2] = this.betas;
    this.updates += 1;
    const correction1 = 1 - b1 ** this.updates;
    const correction2 = 1 - b2 ** this.updates;
    tf.tidy(() => {
      for (const [name, p] of this.params) {
        const g = grads.get(name)!;
        const m = this.m.get(name)!;
        const v = this.v.get(name)!;
        m.assign(tf.add(tf.mul(m, b1), tf.mul(g, 1 - b1)));
        v.assign(tf.add(tf.mul(v, b2), tf.mul(tf.square(g), 1 - b2)));
        const step = tf.div(tf.div(m, correction1), tf.add(tf.sqrt(tf.div(v, correction2)), this.epsilon));
        const decayed = this.decayed.has(name) ? tf.mul(p, 1 - learningRate * weightDecay) : p;
        p.assign(tf.sub(decayed, tf.mul(step, learningRate)));
      }
    });
  }

  dispose(): void {
    for (const t of [...this.m.values(), ...this.v.values()]) t.dispose();
  }
}

/** The global L2 norm of all gradients, and the factor that clips it to `maxNorm` (PyTorch: max / (norm + 1e-6), at most 1). */
export function clipFactor(grads: readonly tf.Tensor[], maxNorm: number): { norm: number; factor: number } {
  const norm = Math.sqrt(tf.tidy(() => tf.addN(grads.map((g) => tf.sum(tf.square(g)))).dataSync()[0]!));
  const factor = maxNorm > 0 ? Math.min(1, maxNorm / (norm + 1e-6)) : 1;
  return { norm, factor };
}
