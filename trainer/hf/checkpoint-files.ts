import { readFile, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { M4Error } from '../../core/errors.ts';
import { openSafetensors, type SafetensorsEntry, type SafetensorsFile } from '../safetensors.ts';

/**
 * A local Hugging Face checkpoint as `from_pretrained` finds one: a folder holding `model.safetensors`, or a sharded
 * set named by `model.safetensors.index.json` (`weight_map`: tensor name -> shard file), plus `config.json`; or one
 * of those files given directly (its folder's config.json is read when present). Nothing is downloaded. Only the
 * headers are read here; tensors are read one at a time later, by offset.
 */
export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';
export const CONFIG_FILE = 'config.json';

export interface CheckpointTensor {
  file: SafetensorsFile;
  entry: SafetensorsEntry;
}

export interface CheckpointFiles {
  /** The path as given. */
  origin: string;
  config: Record<string, unknown> | null;
  configPath: string;
  tensors: Map<string, CheckpointTensor>;
  close(): Promise<void>;
}

export async function openCheckpoint(origin: string): Promise<CheckpointFiles> {
  const info = await stat(origin).catch(() => {
    throw new M4Error('E_NOT_FOUND', 'trainer', `--init-from ${origin}: no such file or folder`, { path: origin });
  });
  let dir = origin;
  let weights: string;
  if (info.isDirectory()) {
    if (await exists(join(origin, INDEX_FILE))) weights = join(origin, INDEX_FILE);
    else if (await exists(join(origin, SINGLE_FILE))) weights = join(origin, SINGLE_FILE);
    else throw new M4Error('E_INPUT', 'trainer', `--init-from ${origin}: the folder holds neither ${SINGLE_FILE} nor ${INDEX_FILE}`, { path: origin });
  } else {
    dir = dirname(origin);
    weights = origin;
  }
  const configPath = join(dir, CONFIG_FILE);
  const config = (await exists(configPath)) ? await readJson(configPath) : null;
  const files: SafetensorsFile[] = [];
  const close = async () => {
    await Promise.all(files.map((f) => f.close()));
  };
  try {
    const tensors = new Map<string, CheckpointTensor>();
    if (weights.endsWith('.json')) {
      for (const [shard, names] of await readIndex(weights)) {
        const file = await openSafetensors(join(dirname(weights), shard));
        files.push(file);
        for (const name of names) {
          const entry = file.entries.get(name);
          if (!entry)
            throw new M4Error('E_INPUT', 'trainer', `${weights} places ${name} in ${shard}, which holds no such tensor`, { path: weights, tensor: name });
          tensors.set(name, { file, entry });
        }
        for (const name of file.entries.keys()) {
          if (!names.has(name))
            throw new M4Error('E_INPUT', 'trainer', `${file.path} holds ${name}, which ${basename(weights)} does not place there`, {
              path: file.path,
              tensor: name,
            });
        }
      }
    } else {
      const file = await openSafetensors(weights);
      files.push(file);
      for (const [name, entry] of file.entries) tensors.set(name, { file, entry });
    }
    return { origin, config, configPath, tensors, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** Shard file -> the tensor names the index places in it; shard names must be plain file names beside the index. */
async function readIndex(path: string): Promise<Map<string, Set<string>>> {
  const index = await readJson(path);
  const map = index.weight_map;
  const bad = (problem: string): never => {
    throw new M4Error('E_INPUT', 'trainer', `${path}: ${problem}`, { path });
  };
  if (typeof map !== 'object' || map === null || Array.isArray(map)) bad('weight_map is not an object of tensor name -> shard file');
  const shards = new Map<string, Set<string>>();
  for (const [name, shard] of Object.entries(map as Record<string, unknown>)) {
    if (typeof shard !== 'string' || shard === '' || shard !== basename(shard) || shard === '..' || shard === '.')
      bad(`${name} is placed in ${JSON.stringify(shard)}, not a file beside the index`);
    const names = shards.get(shard as string) ?? new Set<string>();
    names.add(name);
    shards.set(shard as string, names);
  }
  return shards;
}

async function readJson(path: string): Promise<Record<string, unknown>> {
  let value: unknown;
  try {
    value = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new M4Error('E_INPUT', 'trainer', `${path} is not readable JSON: ${(err as Error).message}`, { path });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new M4Error('E_INPUT', 'trainer', `${path} is not a JSON object`, { path });
  return value as Record<string, unknown>;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
