import * as tf from '@tensorflow/tfjs';
import type { ModelConfig } from './model-config.ts';
import { frozenMatrix, type FrozenMatrix } from './ops.ts';
import { parameterSpecs, type ParameterSpec } from './parameters.ts';

/** Values for some weights, by the names of `parameterSpecs`, already in the model's layout (matrices [in, out]). */
export interface InitialWeights {
  has(name: string): boolean;
  /** One weight's values; read one at a time, so a large checkpoint never sits whole in memory. */
  read(name: string): Promise<Float32Array>;
}

/**
 * The model's weights: frozen ones as plain tensors (never on an optimizer's list, so they get no gradient and no
 * state), trainable ones as variables. Frozen matrices of the decoder keep their transpose for the backward pass.
 */
export class Weights {
  readonly specs: ParameterSpec[];
  readonly frozen = new Map<string, tf.Tensor>();
  readonly trainable = new Map<string, tf.Variable>();
  private readonly matrices = new Map<string, FrozenMatrix>();

  private constructor(specs: ParameterSpec[]) {
    this.specs = specs;
  }

  /** Each weight from `initial` when it has it, seeded random (or ones, zeros) otherwise. */
  static async create(config: ModelConfig, initial?: InitialWeights): Promise<Weights> {
    const weights = new Weights(parameterSpecs(config));
    try {
      for (const spec of weights.specs) {
        const tensor = initial?.has(spec.name) ? tf.tensor(await initial.read(spec.name), spec.shape) : initialValue(spec, config.seed);
        if (spec.trainable) {
          weights.trainable.set(spec.name, tf.variable(tensor, true));
          tensor.dispose();
        } else {
          weights.frozen.set(spec.name, tensor);
        }
      }
    } catch (err) {
      weights.dispose();
      throw err;
    }
    return weights;
  }

  get(name: string): tf.Tensor {
    const tensor = this.trainable.get(name) ?? this.frozen.get(name);
    if (!tensor) throw new Error(`no weight named ${name}`);
    return tensor;
  }

  /** A frozen [in, out] matrix with its transpose (made on first use). */
  matrix(name: string): FrozenMatrix {
    let m = this.matrices.get(name);
    if (!m) {
      const w = this.frozen.get(name);
      if (!w) throw new Error(`no frozen matrix named ${name}`);
      m = frozenMatrix(w as tf.Tensor2D);
      this.matrices.set(name, m);
    }
    return m;
  }

  dispose(): void {
    for (const m of this.matrices.values()) m.wt.dispose();
    for (const t of this.frozen.values()) t.dispose();
    for (const v of this.trainable.values()) v.dispose();
    this.matrices.clear();
    this.frozen.clear();
    this.trainable.clear();
  }
}

function initialValue(spec: ParameterSpec, seed: number): tf.Tensor {
  switch (spec.init.kind) {
    case 'ones':
      return tf.ones(spec.shape);
    case 'zeros':
      return tf.zeros(spec.shape);
    case 'normal':
      return tf.randomNormal(spec.shape, 0, spec.init.std, 'float32', seedFor(seed, spec.name));
  }
}

/** A per-weight seed from the model's seed and the weight's name (FNV-1a), so weights do not depend on each other's order. */
function seedFor(seed: number, name: string): number {
  let hash = 0x811c9dc5 ^ seed;
  for (let i = 0; i < name.length; i++) hash = Math.imul(hash ^ name.charCodeAt(i), 0x01000193);
  return hash >>> 0;
}
