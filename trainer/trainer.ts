import * as tf from '@tensorflow/tfjs';
import { M4Error } from '../core/errors.ts';
import type { Batch } from '../trainer-bridge/batch.ts';
import { learningRateAt, type HyperParameters } from './hyper-parameters.ts';
import type { LossSums } from './lm-loss.ts';
import type { AtumModel } from './model.ts';
import { AdamW, clipFactor } from './optimizer.ts';
import { isDecayed } from './parameters.ts';

/** What one optimizer step measured. Means are over the step's label tokens. */
export interface UpdateStats {
  /** Next-token cross-entropy (nats), before the update. */
  loss: number;
  /** Mean logsumexp(logits)^2, before its weight. */
  zLoss: number;
  /** What was minimised: loss + zLossWeight * zLoss. */
  objective: number;
  learningRate: number;
  /** Global gradient norm before clipping, and the factor clipping applied. */
  gradNorm: number;
  clipFactor: number;
  labelTokens: number;
}

/**
 * Gradient accumulation and optimizer updates for one model. Gradients of summed losses are added per micro-batch and
 * divided by the step's label tokens at update time, so a step's loss is the mean over all its tokens however it was
 * split. Only trainable weights are differentiated.
 */
export class Trainer {
  readonly model: AtumModel;
  readonly hyper: HyperParameters;
  readonly optimizer: AdamW;
  private readonly accumulated = new Map<string, tf.Tensor>();
  private sums: LossSums = { crossEntropy: 0, zLoss: 0, count: 0 };

  constructor(model: AtumModel, hyper: HyperParameters) {
    this.model = model;
    this.hyper = hyper;
    const decayed = new Set(model.weights.specs.filter(isDecayed).map((s) => s.name));
    this.optimizer = new AdamW(model.trainableVariables(), { betas: hyper.adamBetas, epsilon: hyper.adamEpsilon, decayed });
  }

  /** Adds one micro-batch's gradients; returns its non-padding tokens and encoded images. */
  accumulate(batch: Batch): { tokens: number; images: number } {
    const prepared = this.model.prepare(batch);
    try {
      const variables = this.model.trainableVariables();
      const names = new Map([...variables].map(([name, v]) => [v.name, name]));
      const { value, grads } = tf.variableGrads(() => this.model.objective(prepared, this.sums, { zWeight: this.hyper.zLossWeight }), [...variables.values()]);
      value.dispose();
      for (const [variableName, grad] of Object.entries(grads)) {
        const name = names.get(variableName)!;
        const previous = this.accumulated.get(name);
        this.accumulated.set(name, previous ? tf.add(previous, grad) : grad);
        if (previous) {
          previous.dispose();
          grad.dispose();
        }
      }
      return { tokens: prepared.tokens, images: prepared.images };
    } finally {
      prepared.dispose();
    }
  }

  /** Applies the accumulated gradients as optimizer step `step` (0-based) and starts a new accumulation. */
  update(step: number): UpdateStats {
    const { crossEntropy, zLoss, count } = this.sums;
    const grads = new Map<string, tf.Tensor>();
    const divisor = Math.max(1, count);
    for (const [name, variable] of this.model.trainableVariables()) {
      const sum = this.accumulated.get(name);
      // A weight off every path to the loss this step (the resampler, in a batch without images) gets zero.
      grads.set(name, sum ? tf.div(sum, divisor) : tf.zerosLike(variable));
    }
    const clip = clipFactor([...grads.values()], this.hyper.gradientClipping);
    const loss = crossEntropy / divisor;
    const z = zLoss / divisor;
    if (!Number.isFinite(loss) || !Number.isFinite(z) || !Number.isFinite(clip.norm)) {
      // Checked before the update, so the weights stay those of the last finite step (and can be checkpointed).
      tf.dispose([...grads.values()]);
      this.discard();
      const what = [
        ['loss', loss],
        ['z-loss', z],
        ['gradient norm', clip.norm],
      ]
        .filter(([, v]) => !Number.isFinite(v as number))
        .map(([name, v]) => `${name} ${v}`);
      throw new M4Error(
        'E_DIVERGED',
        'trainer',
        `step ${step + 1} diverged: ${what.join(', ')} (learning rate ${learningRateAt(step, this.hyper).toExponential(2)}); the update was not applied`,
        { step: step + 1 },
      );
    }
    const learningRate = learningRateAt(step, this.hyper);
    const clipped = new Map([...grads].map(([name, g]) => [name, clip.factor === 1 ? g : tf.mul(g, clip.factor)]));
    this.optimizer.apply(clipped, learningRate, this.hyper.weightDecay);
    tf.dispose([...grads.values(), ...clipped.values()]);
    this.discard();
    return { loss, zLoss: z, objective: loss + this.hyper.zLossWeight * z, learningRate, gradNorm: clip.norm, clipFactor: clip.factor, labelTokens: count };
  }

  /** Drops a partial accumulation (a step interrupted before its last micro-batch). */
  discard(): void {
    tf.dispose([...this.accumulated.values()]);
    this.accumulated.clear();
    this.sums = { crossEntropy: 0, zLoss: 0, count: 0 };
  }

  dispose(): void {
    this.discard();
    this.optimizer.dispose();
  }
}
