import { crossLayerIndices, perceiverMlpDim, visionTokensPerImage, type ModelConfig } from '../model-config.ts';

/**
 * Where each weight of the model lives in a Hugging Face checkpoint, by transformers' own module names, per layout:
 * `LlamaForCausalLM` (the frozen decoder), `CLIPVisionModel` / `CLIPModel` (the frozen ViT) and
 * `IdeficsForVisionText2Text` (everything). The model keeps matrices [in, out]; PyTorch's `Linear.weight` is
 * [out, in], its patch `Conv2d.weight` [out, 3, patch, patch], and IDEFICS's float gates have shape [1].
 */
export type Layout = 'llama' | 'clip' | 'idefics';

export const LAYOUT_CLASSES: Record<Layout, string> = {
  llama: 'LlamaForCausalLM',
  clip: 'CLIPVisionModel / CLIPModel',
  idefics: 'IdeficsForVisionText2Text',
};

/** `same`: identical layout; `transpose`: Linear [out, in]; `patch`: Conv2d [out, c, p, p]; `scalar`: [1] to []. */
export type Conversion = 'same' | 'transpose' | 'patch' | 'scalar';

export interface TensorMapping {
  /** The checkpoint's tensor name. */
  hf: string;
  /** The model's weight name (`parameterSpecs`). */
  weight: string;
  /** The checkpoint's shape. */
  hfShape: number[];
  conversion: Conversion;
}

const linear = (hf: string, weight: string, inputs: number, outputs: number): TensorMapping => ({
  hf,
  weight,
  hfShape: [outputs, inputs],
  conversion: 'transpose',
});
const same = (hf: string, weight: string, shape: number[]): TensorMapping => ({ hf, weight, hfShape: shape, conversion: 'same' });
const layerNorm = (hf: string, weight: string, width: number): TensorMapping[] => [
  same(`${hf}.weight`, `${weight}.gain`, [width]),
  same(`${hf}.bias`, `${weight}.bias`, [width]),
];

/** CLIP's vision tower under `prefix` (`vision_model.` in CLIP, `model.vision_model.` in IDEFICS). */
function visionMappings(config: ModelConfig, prefix: string): TensorMapping[] {
  const v = config.vision;
  const out: TensorMapping[] = [
    same(`${prefix}embeddings.class_embedding`, 'vision.class_embedding', [v.dim]),
    { hf: `${prefix}embeddings.patch_embedding.weight`, weight: 'vision.patch_embed', hfShape: [v.dim, 3, v.patchSize, v.patchSize], conversion: 'patch' },
    same(`${prefix}embeddings.position_embedding.weight`, 'vision.pos_embed', [visionTokensPerImage(config), v.dim]),
    ...layerNorm(`${prefix}pre_layrnorm`, 'vision.pre_norm', v.dim),
  ];
  for (let i = 0; i < v.layers; i++) {
    const hf = `${prefix}encoder.layers.${i}`;
    const at = `vision.layers.${i}`;
    for (const [proj, w] of [
      ['q_proj', 'q'],
      ['k_proj', 'k'],
      ['v_proj', 'v'],
      ['out_proj', 'o'],
    ] as const) {
      out.push(linear(`${hf}.self_attn.${proj}.weight`, `${at}.w${w}`, v.dim, v.dim), same(`${hf}.self_attn.${proj}.bias`, `${at}.b${w}`, [v.dim]));
    }
    out.push(...layerNorm(`${hf}.layer_norm1`, `${at}.ln1`, v.dim), ...layerNorm(`${hf}.layer_norm2`, `${at}.ln2`, v.dim));
    out.push(linear(`${hf}.mlp.fc1.weight`, `${at}.fc1`, v.dim, v.mlpDim), same(`${hf}.mlp.fc1.bias`, `${at}.b1`, [v.mlpDim]));
    out.push(linear(`${hf}.mlp.fc2.weight`, `${at}.fc2`, v.mlpDim, v.dim), same(`${hf}.mlp.fc2.bias`, `${at}.b2`, [v.dim]));
  }
  out.push(...layerNorm(`${prefix}post_layernorm`, 'vision.post_norm', v.dim));
  return out;
}

/** LLaMA's decoder (`model.*`, `lm_head.weight`); a tied head is read from the embedding. */
function languageMappings(config: ModelConfig, tiedHead: boolean): TensorMapping[] {
  const l = config.language;
  const out: TensorMapping[] = [same('model.embed_tokens.weight', 'language.embed', [l.vocabSize, l.dim])];
  for (let i = 0; i < l.layers; i++) {
    const hf = `model.layers.${i}`;
    const at = `language.layers.${i}`;
    out.push(same(`${hf}.input_layernorm.weight`, `${at}.attn_norm`, [l.dim]));
    for (const w of ['q', 'k', 'v', 'o']) out.push(linear(`${hf}.self_attn.${w}_proj.weight`, `${at}.w${w}`, l.dim, l.dim));
    out.push(same(`${hf}.post_attention_layernorm.weight`, `${at}.ffn_norm`, [l.dim]));
    out.push(linear(`${hf}.mlp.gate_proj.weight`, `${at}.w_gate`, l.dim, l.ffnDim), linear(`${hf}.mlp.up_proj.weight`, `${at}.w_up`, l.dim, l.ffnDim));
    out.push(linear(`${hf}.mlp.down_proj.weight`, `${at}.w_down`, l.ffnDim, l.dim));
  }
  out.push(same('model.norm.weight', 'language.final_norm', [l.dim]));
  out.push(linear(tiedHead ? 'model.embed_tokens.weight' : 'lm_head.weight', 'language.lm_head', l.dim, l.vocabSize));
  return out;
}

/** IDEFICS's trained rows of the added tokens: `IdeficsDecoupledEmbedding` and `IdeficsDecoupledLinear`. */
function addedTokenMappings(config: ModelConfig): TensorMapping[] {
  const l = config.language;
  return [
    same('model.embed_tokens.additional_embedding.weight', 'language.embed_added', [l.addedTokens, l.dim]),
    linear('lm_head.additional_fc.weight', 'language.lm_head_added', l.dim, l.addedTokens),
  ];
}

/** `IdeficsPerceiverResampler`: blocks of [IdeficsPerceiverAttention, IdeficsMLP], then `layer_norm`. */
function perceiverMappings(config: ModelConfig): TensorMapping[] {
  const v = config.vision;
  const p = config.perceiver;
  const inner = p.heads * p.headDim;
  const out: TensorMapping[] = [same('model.perceiver_resampler.latents', 'perceiver.latents', [p.latents, v.dim])];
  for (let i = 0; i < p.layers; i++) {
    const hf = `model.perceiver_resampler.blocks.${i}`;
    const at = `perceiver.layers.${i}`;
    out.push(...layerNorm(`${hf}.0.context_layer_norm`, `${at}.context_norm`, v.dim), ...layerNorm(`${hf}.0.latents_layer_norm`, `${at}.latents_norm`, v.dim));
    if (p.qkLayerNorms)
      out.push(...layerNorm(`${hf}.0.q_layer_norm`, `${at}.q_norm`, p.headDim), ...layerNorm(`${hf}.0.k_layer_norm`, `${at}.k_norm`, p.headDim));
    for (const w of ['q', 'k', 'v']) out.push(linear(`${hf}.0.${w}_proj.weight`, `${at}.w${w}`, v.dim, inner));
    out.push(linear(`${hf}.0.output_proj.weight`, `${at}.wo`, inner, v.dim));
    out.push(...layerNorm(`${hf}.1.ln`, `${at}.mlp_norm`, v.dim));
    out.push(
      linear(`${hf}.1.fc.weight`, `${at}.fc1`, v.dim, perceiverMlpDim(config)),
      linear(`${hf}.1.c_proj.weight`, `${at}.fc2`, perceiverMlpDim(config), v.dim),
    );
  }
  out.push(...layerNorm('model.perceiver_resampler.layer_norm', 'perceiver.final_norm', v.dim));
  return out;
}

/** `IdeficsGatedCrossAttentionLayer`s: block k sits before decoder layer k * interval. */
function crossMappings(config: ModelConfig): TensorMapping[] {
  const l = config.language;
  const v = config.vision;
  const out: TensorMapping[] = [];
  for (const layer of crossLayerIndices(config)) {
    const hf = `model.gated_cross_attn_layers.${layer / config.crossAttention.interval}`;
    const at = `cross.${layer}`;
    out.push({ hf: `${hf}.alpha_cross_attn`, weight: `${at}.gate_attn`, hfShape: [1], conversion: 'scalar' });
    out.push({ hf: `${hf}.alpha_dense`, weight: `${at}.gate_ffn`, hfShape: [1], conversion: 'scalar' });
    out.push(linear(`${hf}.cross_attn.q_proj.weight`, `${at}.wq`, l.dim, l.dim));
    out.push(linear(`${hf}.cross_attn.k_proj.weight`, `${at}.wk`, v.dim, l.dim), linear(`${hf}.cross_attn.v_proj.weight`, `${at}.wv`, v.dim, l.dim));
    out.push(linear(`${hf}.cross_attn.o_proj.weight`, `${at}.wo`, l.dim, l.dim));
    if (config.crossAttention.qkLayerNorms) {
      const headDim = l.dim / l.heads;
      out.push(
        same(`${hf}.cross_attn.q_layer_norm.weight`, `${at}.q_norm`, [headDim]),
        same(`${hf}.cross_attn.k_layer_norm.weight`, `${at}.k_norm`, [headDim]),
      );
    }
    out.push(linear(`${hf}.mlp.gate_proj.weight`, `${at}.w_gate`, l.dim, l.ffnDim), linear(`${hf}.mlp.up_proj.weight`, `${at}.w_up`, l.dim, l.ffnDim));
    out.push(linear(`${hf}.mlp.down_proj.weight`, `${at}.w_down`, l.ffnDim, l.dim));
    out.push(same(`${hf}.input_layernorm.weight`, `${at}.attn_norm`, [l.dim]), same(`${hf}.post_attention_layernorm.weight`, `${at}.ffn_norm`, [l.dim]));
  }
  return out;
}

/** Every tensor a checkpoint of `layout` holds for this model, with its shape there and its conversion. */
export function layoutMappings(layout: Layout, config: ModelConfig, options: { tiedHead?: boolean } = {}): TensorMapping[] {
  switch (layout) {
    case 'llama':
      return languageMappings(config, options.tiedHead ?? false);
    case 'clip':
      return visionMappings(config, 'vision_model.');
    case 'idefics':
      return [
        ...visionMappings(config, 'model.vision_model.'),
        ...perceiverMappings(config),
        ...languageMappings(config, false),
        ...addedTokenMappings(config),
        ...crossMappings(config),
      ];
  }
}

/** Buffers older checkpoints carry that are not weights: rotary inverse frequencies and CLIP's position ids. */
export function isBuffer(name: string): boolean {
  return name.endsWith('.rotary_emb.inv_freq') || name === 'position_ids' || name.endsWith('.position_ids');
}

/** CLIPModel's parts beside the vision tower (its text tower and projections), which a CLIP checkpoint may carry. */
export function isOtherClipTower(name: string): boolean {
  return name.startsWith('text_model.') || name === 'visual_projection.weight' || name === 'text_projection.weight' || name === 'logit_scale';
}

/** A checkpoint's layout from its tensor names, for checkpoints without a config.json. */
export function layoutFromNames(names: Iterable<string>): Layout | null {
  let llama = false;
  let clip = false;
  for (const name of names) {
    if (/^model\.(vision_model|perceiver_resampler|gated_cross_attn_layers)\./.test(name) || name.startsWith('model.embed_tokens.additional_embedding'))
      return 'idefics';
    if (name.startsWith('vision_model.')) clip = true;
    if (name.startsWith('model.layers.') || name === 'model.embed_tokens.weight') llama = true;
  }
  if (llama === clip) return null;
  return llama ? 'llama' : 'clip';
}

/** The model's values from a checkpoint tensor's (float32, row-major). */
export function toModelLayout(values: Float32Array, mapping: TensorMapping): Float32Array {
  if (mapping.conversion === 'same' || mapping.conversion === 'scalar') return values;
  const rows = mapping.hfShape[0]!;
  return transpose(values, rows, values.length / rows);
}

/** A checkpoint tensor's values from the model's (the inverse of `toModelLayout`). */
export function toCheckpointLayout(values: Float32Array, mapping: TensorMapping): Float32Array {
  if (mapping.conversion === 'same' || mapping.conversion === 'scalar') return values;
  const rows = mapping.hfShape[0]!;
  return transpose(values, values.length / rows, rows);
}

function transpose(values: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(values.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = values[r * cols + c]!;
  return out;
}
