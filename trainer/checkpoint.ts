import * as tf from '@tensorflow/tfjs';
import { join } from 'node:path';
import { M4Error } from '../core/errors.ts';
import { writeFileAtomically } from '../shards/storage/local.ts';
import type { BridgeState } from '../trainer-bridge/batch.ts';
import type { HyperParameters } from './hyper-parameters.ts';
import type { ModelConfig } from './model-config.ts';
import type { AtumModel } from './model.ts';
import type { AdamW } from './optimizer.ts';
import { encodeSafetensors, openSafetensors, type TensorToWrite } from './safetensors.ts';

/** One file per run directory, replaced atomically: a safetensors file whose metadata holds the run's state. */
export const CHECKPOINT_FILE = 'checkpoint.safetensors';
const METADATA_KEY = 'm4data';

export interface CheckpointInfo {
  format: 'm4data-trainer-checkpoint';
  version: 1;
  /** Optimizer steps completed. */
  step: number;
  model: ModelConfig;
  profile: string;
  /** Safetensors files the frozen weights were read from (empty: seeded random). */
  frozenWeights: string[];
  hyperParameters: HyperParameters;
  /** The data stream's resume point after the last micro-batch of `step` (null when the caller gave none). */
  bridgeState: BridgeState | null;
  /** The batches' shape, which a resumed run keeps (absent in checkpoints of the first release: see bridgeState). */
  batchShape?: TrainingBatchShape;
}

/** What the bridge's batches look like in a run; a resumed run reads the same. */
export interface TrainingBatchShape {
  batchSize: number;
  seqLen: number;
  maxImages: number;
  maskImageTokens: boolean;
  imageTransform: string;
}

/** Trainable weights as `param/NAME`, Adam's moments as `adam.m/NAME` and `adam.v/NAME`; written atomically. */
export async function saveCheckpoint(runDir: string, model: AtumModel, optimizer: AdamW, info: CheckpointInfo): Promise<string> {
  const tensors: TensorToWrite[] = [];
  const add = (prefix: string, map: Map<string, tf.Variable>) => {
    for (const [name, v] of map) tensors.push({ name: `${prefix}/${name}`, shape: v.shape, data: v.dataSync() as Float32Array });
  };
  add('param', model.trainableVariables());
  add('adam.m', optimizer.m);
  add('adam.v', optimizer.v);
  const bytes = encodeSafetensors(tensors, { [METADATA_KEY]: JSON.stringify({ ...info, adamUpdates: optimizer.updates }) });
  const path = join(runDir, CHECKPOINT_FILE);
  await writeFileAtomically(path, bytes);
  return path;
}

/** The run directory's checkpoint metadata, or null when it has none. */
export async function readCheckpointInfo(runDir: string): Promise<CheckpointInfo | null> {
  const path = join(runDir, CHECKPOINT_FILE);
  let file;
  try {
    file = await openSafetensors(path);
  } catch (err) {
    if ((err as M4Error).code === 'E_NOT_FOUND') return null;
    throw err;
  }
  try {
    return parseInfo(file.metadata, path);
  } finally {
    await file.close();
  }
}

/** Restores trainable weights and optimizer state in place; returns the checkpoint's metadata. */
export async function loadCheckpoint(runDir: string, model: AtumModel, optimizer: AdamW): Promise<CheckpointInfo> {
  const path = join(runDir, CHECKPOINT_FILE);
  const file = await openSafetensors(path);
  try {
    const info = parseInfo(file.metadata, path);
    const restore = async (prefix: string, map: Map<string, tf.Variable>) => {
      for (const [name, v] of map) {
        const values = await file.read(`${prefix}/${name}`);
        const restored = tf.tensor(values, v.shape);
        v.assign(restored);
        restored.dispose();
      }
    };
    await restore('param', model.trainableVariables());
    await restore('adam.m', optimizer.m);
    await restore('adam.v', optimizer.v);
    optimizer.updates = Number((JSON.parse(file.metadata[METADATA_KEY]!) as { adamUpdates: number }).adamUpdates);
    return info;
  } finally {
    await file.close();
  }
}

function parseInfo(metadata: Record<string, string>, path: string): CheckpointInfo {
  const text = metadata[METADATA_KEY];
  const info = text === undefined ? undefined : (JSON.parse(text) as CheckpointInfo);
  if (info?.format !== 'm4data-trainer-checkpoint' || info.version !== 1) {
    throw new M4Error('E_INPUT', 'trainer', `${path} is not an m4data trainer checkpoint (version 1)`, { path });
  }
  return info;
}
