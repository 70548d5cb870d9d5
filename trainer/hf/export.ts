import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { M4Error } from '../../core/errors.ts';
import { checkLocalOutput } from '../../shards/storage/local-output.ts';
import { writeFileAtomically } from '../../shards/storage/local.ts';
import { loadCheckpoint, readCheckpointInfo } from '../checkpoint.ts';
import type { AtumModel } from '../model.ts';
import { elementCount } from '../parameters.ts';
import { writeSafetensorsFile, type TensorToWrite } from '../safetensors.ts';
import { CONFIG_FILE, INDEX_FILE, SINGLE_FILE } from './checkpoint-files.ts';
import { ideficsConfigJson } from './config-json.ts';
import { createInitialModel } from './init-from.ts';
import { layoutMappings, toCheckpointLayout } from './names.ts';

/**
 * Writes the model as transformers saves `IdeficsForVisionText2Text`: `config.json` and `model.safetensors` (F32,
 * metadata `format: pt`, as `from_pretrained` requires), or above `maxShardBytes` the shards
 * `model-00001-of-0000N.safetensors` with `model.safetensors.index.json`. Tensors are written one at a time; every file
 * appears only complete, config.json last. Nothing already in the folder is overwritten.
 */

/** transformers' `save_pretrained` default shard size ("5GB"). */
export const DEFAULT_MAX_SHARD_BYTES = 5e9;
const SHARD_NAME = /^model-\d{5}-of-\d{5}\.safetensors$/;

export interface ExportResult {
  dir: string;
  files: string[];
  tensors: number;
  bytes: number;
}

/** Refuses, before anything is written, an output that is not a writable folder or already holds a checkpoint. */
export async function checkExportLocation(dir: string, flag: string): Promise<void> {
  await checkLocalOutput(dir, flag);
  const present = await readdir(dir).catch(() => [] as string[]);
  const taken = present.filter((name) => name === CONFIG_FILE || name === SINGLE_FILE || name === INDEX_FILE || SHARD_NAME.test(name));
  if (taken.length > 0)
    throw new M4Error('E_USAGE', 'trainer', `${flag} ${dir} already holds ${taken.join(', ')}: choose an empty folder (nothing is overwritten)`, { path: dir });
}

export async function exportHf(model: AtumModel, dir: string, options: { maxShardBytes?: number } = {}): Promise<ExportResult> {
  const maxShardBytes = options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
  const weights = new Map(model.weights.specs.map((spec) => [spec.name, spec]));
  const tensors = layoutMappings('idefics', model.config).map(
    (mapping): TensorToWrite => ({
      name: mapping.hf,
      shape: mapping.hfShape,
      data: () => toCheckpointLayout(model.weights.get(mapping.weight).dataSync() as Float32Array, mapping),
    }),
  );
  if (tensors.length !== weights.size) throw new Error(`export: ${tensors.length} checkpoint tensors for ${weights.size} weights`);
  const shards: TensorToWrite[][] = [[]];
  let shardBytes = 0;
  for (const tensor of tensors) {
    const bytes = 4 * elementCount(tensor.shape);
    if (shardBytes > 0 && shardBytes + bytes > maxShardBytes) {
      shards.push([]);
      shardBytes = 0;
    }
    shards.at(-1)!.push(tensor);
    shardBytes += bytes;
  }
  await mkdir(dir, { recursive: true });
  const metadata = { format: 'pt' };
  const files: string[] = [];
  let bytes = 0;
  if (shards.length === 1) {
    bytes += await writeSafetensorsFile(join(dir, SINGLE_FILE), tensors, metadata);
    files.push(SINGLE_FILE);
  } else {
    const weightMap: Record<string, string> = {};
    for (const [k, shard] of shards.entries()) {
      const name = `model-${String(k + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
      bytes += await writeSafetensorsFile(join(dir, name), shard, metadata);
      for (const t of shard) weightMap[t.name] = name;
      files.push(name);
    }
    const totalSize = tensors.reduce((sum, t) => sum + 4 * elementCount(t.shape), 0);
    await writeJsonFile(join(dir, INDEX_FILE), { metadata: { total_size: totalSize }, weight_map: weightMap });
    files.push(INDEX_FILE);
  }
  await writeJsonFile(join(dir, CONFIG_FILE), ideficsConfigJson(model.config));
  files.push(CONFIG_FILE);
  return { dir, files, tensors: tensors.length, bytes };
}

/** `m4data export`: a run directory's model (its checkpoint's trained weights, its init-from's frozen ones) as IDEFICS. */
export async function exportRun(runDir: string, dir: string, options: { maxShardBytes?: number } = {}): Promise<ExportResult & { step: number }> {
  const info = await readCheckpointInfo(runDir);
  if (!info) throw new M4Error('E_USAGE', 'trainer', `--run-dir ${runDir} holds no checkpoint to export`, { runDir });
  await checkExportLocation(dir, '--output');
  const model = await createInitialModel(info.model, info.initFrom);
  try {
    await loadCheckpoint(runDir, model);
    return { ...(await exportHf(model, dir, options)), step: info.step };
  } finally {
    model.dispose();
  }
}

async function writeJsonFile(path: string, value: unknown): Promise<void> {
  await writeFileAtomically(path, Buffer.from(`${JSON.stringify(value, null, 2)}\n`));
}
