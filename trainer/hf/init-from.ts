import { M4Error } from '../../core/errors.ts';
import { checkModelConfig, type ModelConfig } from '../model-config.ts';
import { AtumModel } from '../model.ts';
import { FLOAT_DTYPES } from '../safetensors.ts';
import type { InitialWeights } from '../weights.ts';
import { openCheckpoint, type CheckpointFiles, type CheckpointTensor } from './checkpoint-files.ts';
import { applyConfigJson, layoutOfConfig } from './config-json.ts';
import { isBuffer, isOtherClipTower, LAYOUT_CLASSES, layoutFromNames, layoutMappings, toModelLayout, type Layout, type TensorMapping } from './names.ts';

/**
 * `--init-from`: the model's first weights from local Hugging Face checkpoints in their own layouts (a LLaMA for the
 * decoder, a CLIP for the ViT, an IDEFICS for everything), each matched by name and shape. Each checkpoint's
 * config.json, when present, sets the part of the model's shape it describes. Every tensor of a checkpoint must be
 * one the layout expects (buffers such as rotary `inv_freq` and CLIP's `position_ids` aside, and CLIPModel's text
 * tower), every tensor the layout expects must be there, with its shape and a float dtype: all problems are listed
 * in one refusal, before anything is allocated. Weights no checkpoint gives stay seeded (the added-token rows after a
 * LLaMA, for instance: they train).
 */
export interface InitFrom {
  /** The model's shape: the base with what the config.json files say. */
  config: ModelConfig;
  weights: InitialWeights;
  /** One line per checkpoint: its layout and what it filled. */
  summary: string[];
  close(): Promise<void>;
}

/** At most this many problems are named in one refusal (the rest are counted). */
const MAX_PROBLEMS = 12;

export async function openInitFrom(paths: readonly string[], base: ModelConfig): Promise<InitFrom> {
  const checkpoints: CheckpointFiles[] = [];
  const close = async () => {
    await Promise.all(checkpoints.map((c) => c.close()));
  };
  try {
    for (const path of paths) checkpoints.push(await openCheckpoint(path));
    let config = base;
    const sources: { checkpoint: CheckpointFiles; layout: Layout; tiedHead: boolean }[] = [];
    for (const checkpoint of checkpoints) {
      const byNames = layoutFromNames(checkpoint.tensors.keys());
      let layout = byNames;
      let tiedHead = false;
      if (checkpoint.config) {
        ({ config, layout, tiedHead } = applyConfigJson(config, checkpoint.config, checkpoint.configPath));
        if (byNames && byNames !== layout) {
          throw new M4Error(
            'E_INPUT',
            'trainer',
            `${checkpoint.origin}: config.json says ${LAYOUT_CLASSES[layoutOfConfig(checkpoint.config, checkpoint.configPath)]}, the tensor names are ` +
              `${LAYOUT_CLASSES[byNames]}'s`,
            { path: checkpoint.origin },
          );
        }
      }
      if (!layout) {
        throw new M4Error(
          'E_INPUT',
          'trainer',
          `${checkpoint.origin}: no config.json, and the tensor names are none of ${Object.values(LAYOUT_CLASSES).join(', ')}`,
          { path: checkpoint.origin },
        );
      }
      sources.push({ checkpoint, layout, tiedHead });
    }
    checkModelConfig(config);
    const plan = new Map<string, { tensor: CheckpointTensor; mapping: TensorMapping; origin: string }>();
    const summary: string[] = [];
    for (const { checkpoint, layout, tiedHead } of sources) {
      const mappings = layoutMappings(layout, config, { tiedHead });
      checkTensors(checkpoint, layout, mappings);
      for (const mapping of mappings) {
        const earlier = plan.get(mapping.weight);
        if (earlier) throw new M4Error('E_USAGE', 'trainer', `--init-from: ${mapping.weight} is given by both ${earlier.origin} and ${checkpoint.origin}`);
        plan.set(mapping.weight, { tensor: checkpoint.tensors.get(mapping.hf)!, mapping, origin: checkpoint.origin });
      }
      summary.push(
        `${checkpoint.origin}: ${LAYOUT_CLASSES[layout]} layout, ${mappings.length} tensors ` +
          `(${[...new Set(mappings.map((m) => m.weight.split('.')[0]))].join(', ')})`,
      );
    }
    const weights: InitialWeights = {
      has: (name) => plan.has(name),
      async read(name) {
        const { tensor, mapping } = plan.get(name)!;
        return toModelLayout(await tensor.file.read(mapping.hf), mapping);
      },
    };
    return { config, weights, summary, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** Refuses a checkpoint with a missing, unexpected, mis-shaped or non-float tensor, naming each. */
function checkTensors(checkpoint: CheckpointFiles, layout: Layout, mappings: TensorMapping[]): void {
  const problems: string[] = [];
  const expected = new Map(mappings.map((m) => [m.hf, m]));
  for (const mapping of expected.values()) {
    const tensor = checkpoint.tensors.get(mapping.hf);
    if (!tensor) problems.push(`missing ${mapping.hf} (expected [${mapping.hfShape}])`);
    else if (tensor.entry.shape.join(',') !== mapping.hfShape.join(',')) {
      const hint = mapping.conversion === 'transpose' ? ", PyTorch's Linear [out, in]" : '';
      problems.push(`${mapping.hf} has shape [${tensor.entry.shape}], expected [${mapping.hfShape}]${hint}`);
    } else if (!FLOAT_DTYPES.includes(tensor.entry.dtype))
      problems.push(`${mapping.hf} is ${tensor.entry.dtype}, expected a float dtype (${FLOAT_DTYPES.join(', ')})`);
  }
  for (const [name, tensor] of checkpoint.tensors) {
    if (expected.has(name) || isBuffer(name) || (layout === 'clip' && isOtherClipTower(name))) continue;
    problems.push(`unexpected ${name} [${tensor.entry.shape}]`);
  }
  if (problems.length === 0) return;
  const listed = problems.slice(0, MAX_PROBLEMS).join('; ');
  const more = problems.length > MAX_PROBLEMS ? `; and ${problems.length - MAX_PROBLEMS} more` : '';
  throw new M4Error('E_INPUT', 'trainer', `--init-from ${checkpoint.origin} (${LAYOUT_CLASSES[layout]} layout) does not fit the model: ${listed}${more}`, {
    path: checkpoint.origin,
    problems,
  });
}

/** The model's shape once `paths`' config.json files are applied to `base`, every checkpoint checked (then closed). */
export async function initialModelConfig(base: ModelConfig, paths: readonly string[]): Promise<{ config: ModelConfig; summary: string[] }> {
  if (paths.length === 0) return { config: base, summary: [] };
  const init = await openInitFrom(paths, base);
  await init.close();
  return { config: init.config, summary: init.summary };
}

/** The model with its first weights read from `paths` (seeded where none gives them); `config` must be what they say. */
export async function createInitialModel(config: ModelConfig, paths: readonly string[]): Promise<AtumModel> {
  if (paths.length === 0) return AtumModel.create(config);
  const init = await openInitFrom(paths, config);
  try {
    if (JSON.stringify(init.config) !== JSON.stringify(config)) {
      throw new M4Error(
        'E_USAGE',
        'trainer',
        `--init-from ${paths.join(' ')}: their config.json files describe another model shape than the run's (changed since the run began?)`,
      );
    }
    return await AtumModel.create(config, init.weights);
  } finally {
    await init.close();
  }
}
