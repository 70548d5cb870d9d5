/**
 * Trainer benchmark: training tokens/s of the tiny model on the WebAssembly backend against the pure CPU backend in
 * the same run, the bridge's supply rate of the same batch shape from four built datasets (the trainer must be the
 * slower side), the hand-written matmul gradient against TensorFlow.js's own, and what the measured rate means for
 * the card's shapes (parameter counts with IDEFICS's components, FLOPs per token, achieved GFLOP/s).
 *
 *   node --import tsx bench/trainer.bench.ts [--quick]
 *
 * Ends with one JSON line {"bench":"trainer", ...}.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { openMixture, readSupplies, writePlan } from '../mixer/mixture.ts';
import { planMixture } from '../mixer/plan.ts';
import { writeSyntheticDataset } from '../sandbox/datasets.ts';
import { openBridge } from '../trainer-bridge/bridge.ts';
import { loadProfile } from '../mixer/profile.ts';
import { selectBackend } from '../trainer/backend.ts';
import { resolveHyperParameters } from '../trainer/hyper-parameters.ts';
import { flopsPerToken, modelPreset, parameterCounts } from '../trainer/model-config.ts';
import { AtumModel } from '../trainer/model.ts';
import { matmul } from '../trainer/ops.ts';
import { SyntheticBatches } from '../sandbox/synthetic-batches.ts';
import { Trainer } from '../trainer/trainer.ts';
import { isQuick, ratio, report, timed } from './harness.ts';

const quick = isQuick();
const SEQ_LEN = quick ? 128 : 256;
const PAIRS = 2;
const STEPS: Record<'wasm' | 'cpu', number> = quick ? { wasm: 2, cpu: 1 } : { wasm: 6, cpu: 2 };

const profile = await loadProfile('atum-9b');
const data = new SyntheticBatches({ batchSize: 1, seqLen: SEQ_LEN, pairsPerRow: PAIRS });
const batches = Array.from({ length: 4 }, (_, i) => data.batch(i));
const tokensPerBatch = batches[0]!.attentionMask.reduce((a, b) => a + b, 0);

/**
 * Tokens per second of full training steps (forward, backward, AdamW) after one warm-up step, by wall clock and per
 * CPU-second of this process (both backends compute on one thread, so the latter is the rate on an idle core: the
 * 2 cores here are shared and the wall-clock rate moves with the load).
 */
async function trainingRate(backend: 'wasm' | 'cpu'): Promise<{ wall: number; cpu: number }> {
  await selectBackend(backend);
  const model = await AtumModel.create(modelPreset('tiny'));
  const trainer = new Trainer(model, resolveHyperParameters(profile, 100, { learningRate: 1e-3, tokensPerStep: SEQ_LEN }));
  const step = (i: number) => {
    trainer.accumulate(batches[i % batches.length]!);
    trainer.update(i);
  };
  step(0);
  const cpuBefore = process.cpuUsage();
  const { seconds } = await timed(async () => {
    for (let i = 1; i <= STEPS[backend]; i++) step(i);
  });
  const cpu = process.cpuUsage(cpuBefore);
  trainer.dispose();
  model.dispose();
  const tokens = tokensPerBatch * STEPS[backend];
  return { wall: tokens / seconds, cpu: tokens / ((cpu.user + cpu.system) / 1e6) };
}

/** Forward and backward of one [rows, k] x [k, n] matmul, hand-written gradient against tfjs's, on wasm. */
async function matmulGradient(): Promise<{ custom: number; tfjs: number }> {
  await selectBackend('wasm');
  const a = tf.randomNormal([SEQ_LEN, 64], 0, 1, 'float32', 1) as tf.Tensor2D;
  const b = tf.randomNormal([64, 128], 0, 1, 'float32', 2) as tf.Tensor2D;
  const rounds = quick ? 20 : 100;
  const time = async (f: (x: tf.Tensor2D, y: tf.Tensor2D) => tf.Tensor) =>
    (
      await timed(async () => {
        for (let i = 0; i < rounds; i++)
          tf.tidy(() =>
            tf
              .grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(f(x as tf.Tensor2D, y as tf.Tensor2D)))([a, b])
              .forEach((g) => g.dataSync()),
          );
      })
    ).seconds / rounds;
  await time(matmul);
  const custom = await time(matmul);
  const tfjs = await time((x, y) => tf.matMul(x, y));
  tf.dispose([a, b]);
  return { custom, tfjs };
}

/** Tokens per second the bridge supplies in batches of the same shape, from four synthetic built datasets. */
async function bridgeSupply(): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'm4-bench-trainer-'));
  try {
    const layouts = { pmd: 'pair', laion: 'pair', obelisc: 'document', wikipedia: 'document' } as const;
    const locations = new Map<string, string>();
    for (const [name, layout] of Object.entries(layouts)) {
      await writeSyntheticDataset({ location: join(dir, name), source: name, layout, shardSamples: [200, 200] });
      locations.set(name, join(dir, name));
    }
    const plan = planMixture({ profile, mode: { kind: 'proportions' }, supplies: await readSupplies(locations), seed: 1, budgetTokens: 1e6 });
    await writePlan(join(dir, 'mix'), plan);
    const batchCount = quick ? 20 : 80;
    const bridge = openBridge(await openMixture(join(dir, 'mix')), { batchSize: 1, seqLen: SEQ_LEN, steps: batchCount + 5 });
    let tokens = 0;
    let seen = 0;
    let start = 0;
    for await (const batch of bridge) {
      if (++seen === 5)
        start = performance.now(); // past the worker pool's start
      else if (seen > 5) tokens += batch.attentionMask.reduce((a, b) => a + b, 0);
    }
    return tokens / ((performance.now() - start) / 1000);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const supply = await bridgeSupply();
const wasm = await trainingRate('wasm');
const cpu = await trainingRate('cpu');
const mm = await matmulGradient();

const imagesPerToken = PAIRS / tokensPerBatch;
const shapes = ['tiny', 'atum-9b', 'atum-80b'].map((name) => {
  const config = modelPreset(name);
  const counts = parameterCounts(config);
  const flops = flopsPerToken(config, { seqLen: name === 'tiny' ? SEQ_LEN : profile.sequenceLength, imagesPerToken });
  return {
    name,
    total: counts.total,
    trainable: counts.trainable,
    addedTokens: counts.addedTokens,
    frozen: counts.frozen,
    flopsPerToken: flops.perToken,
    flopsPerTextToken: flops.perTextToken,
    flopsPerImage: flops.perImage,
  };
});
const tinyFlops = shapes[0]!.flopsPerToken;
const gflops = (wasm.wall * tinyFlops) / 1e9;
const idleGflops = (wasm.cpu * tinyFlops) / 1e9;

console.log(`tiny model, batch 1 x ${SEQ_LEN} tokens, ${PAIRS} images per row (${STEPS.wasm} wasm / ${STEPS.cpu} cpu timed steps)`);
console.log(
  `training: wasm ${wasm.wall.toFixed(0)} tokens/s, cpu ${cpu.wall.toFixed(0)} tokens/s, wasm/cpu ${ratio(wasm.wall, cpu.wall)} (aim: wasm >= 200 tokens/s)`,
);
console.log(
  `bridge supply, same batch shape: ${supply.toFixed(0)} tokens/s, ${ratio(supply, wasm.wall)}x what wasm training consumes (aim > 1: the trainer is the ` +
    `slower side)`,
);
console.log(`per CPU-second (an idle core): wasm ${wasm.cpu.toFixed(0)} tokens, cpu ${cpu.cpu.toFixed(0)} tokens, wasm/cpu ${ratio(wasm.cpu, cpu.cpu)}`);
console.log(
  `matmul forward+backward [${SEQ_LEN},64]x[64,128] on wasm: hand-written gradient ${(mm.custom * 1e3).toFixed(2)} ms, tfjs's ${(mm.tfjs * 1e3).toFixed(2)} ` +
    `ms, ratio ${ratio(mm.tfjs, mm.custom)}`,
);
for (const s of shapes) {
  console.log(
    `${s.name.padEnd(9)} parameters ${(s.total / 1e6).toFixed(2)}M (trainable ${(s.trainable / 1e6).toFixed(2)}M with ${s.addedTokens} in the added-token ` +
      `rows, frozen ${(s.frozen / 1e6).toFixed(2)}M); ` +
      `training ${(s.flopsPerToken / 1e9).toPrecision(4)} GFLOP/token (${(s.flopsPerTextToken / 1e9).toPrecision(3)} per text token + ` +
      `${(s.flopsPerImage / 1e9).toPrecision(3)} per image)`,
  );
}
console.log(
  `achieved on wasm: ${gflops.toFixed(2)} GFLOP/s (${idleGflops.toFixed(2)} per CPU-second), i.e. ${(1 / gflops).toFixed(2)} s per GFLOP of training`,
);
for (const s of shapes.slice(1))
  console.log(`at that rate ${s.name} would train ${((gflops * 1e9) / s.flopsPerToken).toExponential(2)} tokens/s (if it fit in memory)`);
report('trainer', {
  seqLen: SEQ_LEN,
  wasmTokensPerSecond: Math.round(wasm.wall),
  cpuTokensPerSecond: Math.round(cpu.wall),
  wasmOverCpu: ratio(wasm.wall, cpu.wall),
  bridgeSupplyTokensPerSecond: Math.round(supply),
  supplyOverTraining: ratio(supply, wasm.wall),
  wasmTokensPerCpuSecond: Math.round(wasm.cpu),
  cpuTokensPerCpuSecond: Math.round(cpu.cpu),
  matmulGradSpeedup: ratio(mm.tfjs, mm.custom),
  achievedGflops: Math.round(gflops * 100) / 100,
  gflopsPerCpuSecond: Math.round(idleGflops * 100) / 100,
  shapes: shapes.map((s) => ({
    name: s.name,
    parameters: s.total,
    trainable: s.trainable,
    addedTokenRows: s.addedTokens,
    frozen: s.frozen,
    gflopsPerToken: s.flopsPerToken / 1e9,
  })),
});
