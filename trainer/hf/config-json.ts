import { M4Error } from '../../core/errors.ts';
import { IMAGE_SIZE } from '../../trainer-bridge/batch.ts';
import { ROPE_THETA, VISION_ACTIVATIONS, type ModelConfig, type VisionActivation } from '../model-config.ts';
import type { Layout } from './names.ts';

/**
 * A checkpoint's `config.json`, as transformers reads it, turned into the part of the model's shape it describes
 * (LlamaConfig: the decoder; CLIPConfig / CLIPVisionConfig: the ViT; IdeficsConfig: everything), and the IDEFICS
 * config.json an export writes. A key the file leaves out takes its transformers default, as `from_pretrained` does.
 * Settings the model does not have (grouped-query attention, rope scaling, vector gates, ...) are refused by name.
 */
type Json = Record<string, unknown>;

const MODEL_TYPES: Record<string, Layout> = { llama: 'llama', clip: 'clip', clip_vision_model: 'clip', idefics: 'idefics' };

/** Typed reads of one config object, failing with the file and key. */
class ConfigReader {
  constructor(
    private readonly json: Json,
    private readonly path: string,
    private readonly at = '',
  ) {}

  fail(key: string, problem: string): never {
    throw new M4Error('E_INPUT', 'trainer', `${this.path}: ${this.at}${key} ${problem}`, { path: this.path, key: `${this.at}${key}` });
  }

  number(key: string, fallback: number): number {
    const value = this.json[key] ?? fallback;
    if (typeof value !== 'number' || !Number.isFinite(value)) this.fail(key, `is ${JSON.stringify(value)}, not a number`);
    return value as number;
  }

  count(key: string, fallback: number): number {
    const value = this.number(key, fallback);
    if (!Number.isSafeInteger(value) || value < 1) this.fail(key, `is ${value}, not a whole number over 0`);
    return value;
  }

  flag(key: string, fallback: boolean): boolean {
    const value = this.json[key] ?? fallback;
    if (typeof value !== 'boolean') this.fail(key, `is ${JSON.stringify(value)}, not true or false`);
    return value as boolean;
  }

  text(key: string, fallback: string): string {
    const value = this.json[key] ?? fallback;
    if (typeof value !== 'string') this.fail(key, `is ${JSON.stringify(value)}, not a string`);
    return value as string;
  }

  nested(key: string): ConfigReader {
    const value = this.json[key] ?? {};
    if (typeof value !== 'object' || value === null || Array.isArray(value)) this.fail(key, 'is not an object');
    return new ConfigReader(value as Json, this.path, `${this.at}${key}.`);
  }

  /** A setting the model supports only at one value. */
  require<T>(key: string, actual: T, wanted: T, why: string): void {
    if (actual !== wanted) this.fail(key, `is ${JSON.stringify(actual)}; the model needs ${JSON.stringify(wanted)} (${why})`);
  }

  absent(key: string, why: string): void {
    if (this.json[key] !== undefined && this.json[key] !== null) this.fail(key, `is set; ${why}`);
  }
}

/** The layout a config.json names by `model_type`. */
export function layoutOfConfig(json: Json, path: string): Layout {
  const type = new ConfigReader(json, path).text('model_type', '');
  const layout = MODEL_TYPES[type];
  if (!layout)
    throw new M4Error('E_INPUT', 'trainer', `${path}: model_type ${JSON.stringify(type)} is not one of ${Object.keys(MODEL_TYPES).join(', ')}`, { path });
  return layout;
}

/** The model's shape with the part `json` describes replaced; `tiedHead`: the LM head is the embedding (LLaMA only). */
export function applyConfigJson(base: ModelConfig, json: Json, path: string): { config: ModelConfig; layout: Layout; tiedHead: boolean } {
  const layout = layoutOfConfig(json, path);
  const config = structuredClone(base);
  const top = new ConfigReader(json, path);
  let tiedHead = false;
  if (layout === 'llama') {
    config.language = readLlama(top, config.language);
    tiedHead = top.flag('tie_word_embeddings', false);
  } else if (layout === 'clip') {
    config.vision = readVision(json.model_type === 'clip' ? top.nested('vision_config') : top, CLIP_VISION_DEFAULTS, 'hidden_size');
  } else {
    readIdefics(top, config);
  }
  return { config, layout, tiedHead };
}

/** LlamaConfig's defaults where the file is silent; what IDEFICS's decoder cannot be is refused. */
function readLlama(c: ConfigReader, base: ModelConfig['language']): ModelConfig['language'] {
  const heads = c.count('num_attention_heads', 32);
  const dim = c.count('hidden_size', 4096);
  c.require('vocab_size', c.count('vocab_size', 32000), base.vocabSize, "the bridge's ids are LLaMA-1's 32,000 and IDEFICS's two added tokens");
  c.require('hidden_act', c.text('hidden_act', 'silu'), 'silu', "LLaMA's SwiGLU");
  c.require('num_key_value_heads', c.count('num_key_value_heads', heads), heads, 'IDEFICS has no grouped-query attention');
  c.require('rope_theta', c.number('rope_theta', ROPE_THETA), ROPE_THETA, "IDEFICS's rotary base is fixed");
  c.require('attention_bias', c.flag('attention_bias', false), false, "IDEFICS's projections have no bias");
  c.require('mlp_bias', c.flag('mlp_bias', false), false, "IDEFICS's MLP has no bias");
  c.absent('rope_scaling', 'IDEFICS has no rope scaling');
  if (dim % heads !== 0) c.fail('hidden_size', `${dim} is not a multiple of num_attention_heads ${heads}`);
  c.require('head_dim', c.number('head_dim', dim / heads), dim / heads, 'hidden_size / num_attention_heads');
  return {
    ...base,
    dim,
    heads,
    layers: c.count('num_hidden_layers', 32),
    ffnDim: c.count('intermediate_size', 11008),
    rmsNormEps: c.number('rms_norm_eps', 1e-6),
  };
}

interface VisionDefaults {
  dim: number;
  mlpDim: number;
  layers: number;
  heads: number;
  patchSize: number;
  activation: string;
}
const CLIP_VISION_DEFAULTS: VisionDefaults = { dim: 768, mlpDim: 3072, layers: 12, heads: 12, patchSize: 32, activation: 'quick_gelu' };
const IDEFICS_VISION_DEFAULTS: VisionDefaults = { dim: 768, mlpDim: 5120, layers: 32, heads: 16, patchSize: 14, activation: 'gelu' };

/** CLIPVisionConfig and IdeficsVisionConfig name the width differently (`hidden_size`, `embed_dim`). */
function readVision(c: ConfigReader, defaults: VisionDefaults, widthKey: 'hidden_size' | 'embed_dim'): ModelConfig['vision'] {
  c.require('image_size', c.count('image_size', 224), IMAGE_SIZE, "the bridge's pixels are 224 x 224");
  c.require('num_channels', c.count('num_channels', 3), 3, 'RGB');
  const activation = c.text('hidden_act', defaults.activation);
  if (!(VISION_ACTIVATIONS as readonly string[]).includes(activation))
    c.fail('hidden_act', `is ${JSON.stringify(activation)}, not one of ${VISION_ACTIVATIONS.join(', ')}`);
  return {
    imageSize: IMAGE_SIZE,
    patchSize: c.count('patch_size', defaults.patchSize),
    dim: c.count(widthKey, defaults.dim),
    layers: c.count('num_hidden_layers', defaults.layers),
    heads: c.count('num_attention_heads', defaults.heads),
    mlpDim: c.count('intermediate_size', defaults.mlpDim),
    activation: activation as VisionActivation,
    layerNormEps: c.number('layer_norm_eps', 1e-5),
  };
}

/** IdeficsConfig (with its perceiver_config and vision_config); its defaults where the file is silent. */
function readIdefics(c: ConfigReader, config: ModelConfig): void {
  config.language = readLlama(c, config.language);
  c.require('additional_vocab_size', c.number('additional_vocab_size', 0), config.language.addedTokens, '<fake_token_around_image> and <image>');
  c.require('use_resampler', c.flag('use_resampler', false), true, 'the card resamples every image to its latents');
  c.require('alpha_type', c.text('alpha_type', 'float'), 'float', 'the gates are one number each');
  c.require('tie_word_embeddings', c.flag('tie_word_embeddings', false), false, "IDEFICS's head is its own");
  config.crossAttention = { interval: c.count('cross_layer_interval', 1), qkLayerNorms: c.flag('qk_layer_norms', false) };
  const p = c.nested('perceiver_config');
  config.perceiver = {
    layers: p.count('resampler_depth', 6),
    latents: p.count('resampler_n_latents', 64),
    heads: p.count('resampler_n_heads', 16),
    headDim: p.count('resampler_head_dim', 96),
    qkLayerNorms: p.flag('qk_layer_norms_perceiver', false),
  };
  config.vision = readVision(c.nested('vision_config'), IDEFICS_VISION_DEFAULTS, 'embed_dim');
  c.require('vision_embed_dim', c.number('vision_embed_dim', config.vision.dim), config.vision.dim, 'vision_config.embed_dim');
}

/** The config.json of `IdeficsForVisionText2Text` for this model: what `from_pretrained` needs to rebuild it. */
export function ideficsConfigJson(config: ModelConfig): Json {
  const { vision: v, perceiver: p, language: l } = config;
  return {
    architectures: ['IdeficsForVisionText2Text'],
    model_type: 'idefics',
    vocab_size: l.vocabSize,
    additional_vocab_size: l.addedTokens,
    hidden_size: l.dim,
    intermediate_size: l.ffnDim,
    num_hidden_layers: l.layers,
    num_attention_heads: l.heads,
    hidden_act: 'silu',
    rms_norm_eps: l.rmsNormEps,
    dropout: 0.0,
    alpha_initializer: 'zeros',
    alpha_type: 'float',
    alphas_initializer_range: 0.0,
    cross_layer_interval: config.crossAttention.interval,
    qk_layer_norms: config.crossAttention.qkLayerNorms,
    freeze_text_layers: true,
    freeze_text_module_exceptions: [],
    freeze_lm_head: true,
    freeze_vision_layers: true,
    freeze_vision_module_exceptions: [],
    use_resampler: true,
    // The resampler's MLP reads it (IdeficsMLP: `config.vision_embed_dim`).
    vision_embed_dim: v.dim,
    perceiver_config: {
      use_resampler: true,
      resampler_n_latents: p.latents,
      resampler_depth: p.layers,
      resampler_n_heads: p.heads,
      resampler_head_dim: p.headDim,
      qk_layer_norms_perceiver: p.qkLayerNorms,
    },
    vision_config: {
      embed_dim: v.dim,
      image_size: v.imageSize,
      intermediate_size: v.mlpDim,
      patch_size: v.patchSize,
      num_hidden_layers: v.layers,
      num_attention_heads: v.heads,
      num_channels: 3,
      hidden_act: v.activation,
      layer_norm_eps: v.layerNormEps,
    },
    pad_token_id: 0,
    bos_token_id: 1,
    eos_token_id: 2,
    tie_word_embeddings: false,
    use_cache: true,
    torch_dtype: 'float32',
  };
}
