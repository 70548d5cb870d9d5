import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { isM4Error } from '../core/errors.ts';
import { loadProfile } from '../mixer/profile.ts';
import { SyntheticBatches } from '../sandbox/synthetic-batches.ts';
import { selectBackend } from '../trainer/backend.ts';
import { ideficsConfigJson } from '../trainer/hf/config-json.ts';
import { createInitialModel, initialModelConfig } from '../trainer/hf/init-from.ts';
import { layoutMappings } from '../trainer/hf/names.ts';
import { resolveHyperParameters } from '../trainer/hyper-parameters.ts';
import { modelPreset } from '../trainer/model-config.ts';
import { AtumModel } from '../trainer/model.ts';
import { Trainer } from '../trainer/trainer.ts';
import { bf16Bits, rawSafetensors, safetensorsBytes, writeCheckpoint, type RawDtype, type RawTensor } from './helpers/hf-checkpoint.ts';
import { withTempDir } from './helpers/temp-dir.ts';

// Checkpoints in transformers' three layouts, written here by name as transformers saves them (LlamaForCausalLM,
// CLIPModel, IdeficsForVisionText2Text), loaded by --init-from; and every kind of bad checkpoint, refused by name.
await selectBackend('wasm');
const tiny = modelPreset('tiny');

const withDir = <T>(fn: (dir: string) => Promise<T>) => withTempDir('m4-hf-', fn);

/** Values exact in F16 and BF16: multiples of 1/64 in [-0.47, 0.47], a different pattern per tensor. */
const pattern = (count: number, seed: number) => {
  const values = new Float32Array(count);
  for (let i = 0; i < count; i++) values[i] = (((i * 7 + seed * 13) % 61) - 30) / 64;
  return values;
};
let seed = 1;
const tensor = (name: string, shape: number[], dtype: RawDtype = 'F16'): RawTensor => ({
  name,
  dtype,
  shape,
  values: pattern(
    shape.reduce((a, b) => a * b, 1),
    seed++,
  ),
});

const LLAMA_CONFIG = {
  model_type: 'llama',
  architectures: ['LlamaForCausalLM'],
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  num_key_value_heads: 4,
  rms_norm_eps: 1e-5,
  vocab_size: 32000,
  hidden_act: 'silu',
};

/** LlamaForCausalLM's state dict, with the rotary buffers older checkpoints carry. */
function llamaTensors(): RawTensor[] {
  const out = [tensor('model.embed_tokens.weight', [32000, 64])];
  for (let i = 0; i < 4; i++) {
    const at = `model.layers.${i}`;
    for (const p of ['q', 'k', 'v', 'o']) out.push(tensor(`${at}.self_attn.${p}_proj.weight`, [64, 64]));
    out.push(tensor(`${at}.mlp.gate_proj.weight`, [128, 64]), tensor(`${at}.mlp.up_proj.weight`, [128, 64]), tensor(`${at}.mlp.down_proj.weight`, [64, 128]));
    out.push(tensor(`${at}.input_layernorm.weight`, [64]), tensor(`${at}.post_attention_layernorm.weight`, [64]));
    out.push(tensor(`${at}.self_attn.rotary_emb.inv_freq`, [8], 'F32'));
  }
  out.push(tensor('model.norm.weight', [64]), tensor('lm_head.weight', [32000, 64]));
  return out;
}

const CLIP_CONFIG = {
  model_type: 'clip',
  architectures: ['CLIPModel'],
  vision_config: {
    hidden_size: 32,
    intermediate_size: 64,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    image_size: 224,
    patch_size: 14,
    hidden_act: 'quick_gelu',
    layer_norm_eps: 1e-5,
  },
  text_config: { hidden_size: 8 },
};

/** CLIPModel's state dict: the vision tower, and a text tower and projections the trainer has no use for. */
function clipTensors(): RawTensor[] {
  const v = 'vision_model';
  const out = [
    tensor(`${v}.embeddings.class_embedding`, [32]),
    tensor(`${v}.embeddings.patch_embedding.weight`, [32, 3, 14, 14]),
    tensor(`${v}.embeddings.position_embedding.weight`, [257, 32]),
    { name: `${v}.embeddings.position_ids`, dtype: 'I64' as const, shape: [1, 257], values: Array.from({ length: 257 }, (_, i) => i) },
    tensor(`${v}.pre_layrnorm.weight`, [32]),
    tensor(`${v}.pre_layrnorm.bias`, [32]),
  ];
  for (const p of ['k', 'v', 'q', 'out'])
    out.push(tensor(`${v}.encoder.layers.0.self_attn.${p}_proj.weight`, [32, 32]), tensor(`${v}.encoder.layers.0.self_attn.${p}_proj.bias`, [32]));
  for (const n of ['layer_norm1', 'layer_norm2']) out.push(tensor(`${v}.encoder.layers.0.${n}.weight`, [32]), tensor(`${v}.encoder.layers.0.${n}.bias`, [32]));
  out.push(tensor(`${v}.encoder.layers.0.mlp.fc1.weight`, [64, 32]), tensor(`${v}.encoder.layers.0.mlp.fc1.bias`, [64]));
  out.push(tensor(`${v}.encoder.layers.0.mlp.fc2.weight`, [32, 64]), tensor(`${v}.encoder.layers.0.mlp.fc2.bias`, [32]));
  out.push(tensor(`${v}.post_layernorm.weight`, [32]), tensor(`${v}.post_layernorm.bias`, [32]));
  out.push(tensor('text_model.embeddings.token_embedding.weight', [10, 8]), tensor('text_model.final_layer_norm.weight', [8]));
  out.push(tensor('visual_projection.weight', [16, 32]), tensor('text_projection.weight', [16, 8]), tensor('logit_scale', []));
  return out;
}

const values = (model: AtumModel, name: string) => model.weights.get(name).dataSync() as Float32Array;
const byName = (tensors: RawTensor[], name: string) => tensors.find((t) => t.name === name)!.values as Float32Array;

test(
  'a LLaMA checkpoint (LlamaForCausalLM, F16) fills the frozen decoder, transposed; its config sets the shape; the 2 added rows stay seeded and are what ' +
    'trains',
  async () => {
    await withDir(async (dir) => {
      const tensors = llamaTensors();
      await writeCheckpoint(dir, tensors, { config: { ...LLAMA_CONFIG, num_hidden_layers: 2 } });
      // config.json decides the decoder's shape: 2 layers, so the checkpoint's layers 2 and 3 are unexpected.
      await assert.rejects(
        initialModelConfig(tiny, [dir]),
        (err) => isM4Error(err, 'E_INPUT') && /unexpected model\.layers\.2\.self_attn\.q_proj\.weight \[64,64\]/.test(err.message),
      );
      await writeFile(join(dir, 'config.json'), JSON.stringify(LLAMA_CONFIG));
      const { config, summary } = await initialModelConfig(tiny, [dir]);
      assert.equal(config.language.rmsNormEps, 1e-5);
      assert.match(summary[0]!, /LlamaForCausalLM layout, 39 tensors \(language\)/);
      const model = await createInitialModel(config, [dir]);
      const seeded = await AtumModel.create(config);
      try {
        // PyTorch's q_proj.weight[o][i] is the model's wq[i][o].
        const q = byName(tensors, 'model.layers.2.self_attn.q_proj.weight');
        const wq = values(model, 'language.layers.2.wq');
        for (let o = 0; o < 64; o++) for (let i = 0; i < 64; i++) assert.equal(wq[i * 64 + o], q[o * 64 + i]);
        assert.deepEqual(values(model, 'language.embed'), byName(tensors, 'model.embed_tokens.weight'));
        const head = byName(tensors, 'lm_head.weight');
        assert.equal(values(model, 'language.lm_head')[5 * 32000 + 31999], head[31999 * 64 + 5]);
        assert.deepEqual(values(model, 'language.layers.3.ffn_norm'), byName(tensors, 'model.layers.3.post_attention_layernorm.weight'));
        // What the checkpoint does not hold is seeded as without it: the ViT, and the added-token rows.
        for (const name of ['language.embed_added', 'language.lm_head_added', 'vision.patch_embed'])
          assert.deepEqual(values(model, name), values(seeded, name), name);

        // A training step on a batch with <image> tokens: the 32,000 rows never move, the 2 added rows do.
        const embed = values(model, 'language.embed').slice();
        const added = values(model, 'language.embed_added').slice();
        const trainer = new Trainer(model, resolveHyperParameters(await loadProfile('atum-9b'), 10, { learningRate: 1e-2, warmupSteps: 0, tokensPerStep: 32 }));
        trainer.accumulate(new SyntheticBatches({ batchSize: 1, seqLen: 32, pairsPerRow: 2 }).batch(0));
        trainer.update(0);
        trainer.dispose();
        assert.deepEqual(values(model, 'language.embed'), embed);
        const moved = values(model, 'language.embed_added');
        for (let row = 0; row < 2; row++)
          assert.ok(
            moved.subarray(row * 64, row * 64 + 64).some((v, i) => v !== added[row * 64 + i]),
            `added row ${row}`,
          );
      } finally {
        model.dispose();
        seeded.dispose();
      }
    });
  },
);

test(
  'a CLIP checkpoint (CLIPModel, with its text tower and an int64 position_ids buffer) fills the ViT: class token, the patch convolution as a matrix, ' +
    'quick_gelu from its config',
  async () => {
    await withDir(async (dir) => {
      const tensors = clipTensors();
      await writeCheckpoint(dir, tensors, { config: CLIP_CONFIG });
      const { config } = await initialModelConfig(tiny, [dir]);
      assert.equal(config.vision.activation, 'quick_gelu');
      const model = await createInitialModel(config, [dir]);
      try {
        const conv = byName(tensors, 'vision_model.embeddings.patch_embedding.weight');
        const patch = values(model, 'vision.patch_embed');
        // Conv2d weight [out, channel, row, column] -> row (channel, row, column) of the [3 * 14 * 14, 32] matrix.
        for (const [o, c, y, x] of [
          [0, 0, 0, 0],
          [31, 2, 13, 13],
          [7, 1, 5, 9],
        ] as const) {
          assert.equal(patch[((c * 14 + y) * 14 + x) * 32 + o], conv[((o * 3 + c) * 14 + y) * 14 + x]);
        }
        assert.deepEqual(values(model, 'vision.class_embedding'), byName(tensors, 'vision_model.embeddings.class_embedding'));
        assert.deepEqual(values(model, 'vision.layers.0.bo'), byName(tensors, 'vision_model.encoder.layers.0.self_attn.out_proj.bias'));
        assert.deepEqual(values(model, 'vision.pre_norm.gain'), byName(tensors, 'vision_model.pre_layrnorm.weight'));
      } finally {
        model.dispose();
      }
    });
  },
);

test(
  'an IDEFICS checkpoint (IdeficsForVisionText2Text, BF16, sharded with its index) fills every weight, the trainable ones and the [1]-shaped gates ' +
    'included',
  async () => {
    await withDir(async (dir) => {
      const mappings = layoutMappings('idefics', tiny);
      const tensors = mappings.map((m) => tensor(m.hf, m.hfShape, 'BF16'));
      await writeCheckpoint(dir, tensors, { config: ideficsConfigJson(tiny), shards: 3 });
      const model = await createInitialModel((await initialModelConfig(tiny, [dir])).config, [dir]);
      try {
        assert.equal(values(model, 'cross.2.gate_attn').length, 1);
        assert.equal(values(model, 'cross.2.gate_attn')[0], byName(tensors, 'model.gated_cross_attn_layers.1.alpha_cross_attn')[0]);
        assert.deepEqual(values(model, 'perceiver.layers.0.k_norm.bias'), byName(tensors, 'model.perceiver_resampler.blocks.0.0.k_layer_norm.bias'));
        assert.deepEqual(values(model, 'cross.0.q_norm'), byName(tensors, 'model.gated_cross_attn_layers.0.cross_attn.q_layer_norm.weight'));
        const fc = byName(tensors, 'lm_head.additional_fc.weight');
        assert.equal(values(model, 'language.lm_head_added')[7 * 2 + 1], fc[1 * 64 + 7]);
        assert.deepEqual(values(model, 'language.embed_added'), byName(tensors, 'model.embed_tokens.additional_embedding.weight'));
        // Every weight came from the file: no seeded value is left.
        assert.equal(mappings.length, model.weights.specs.length);
      } finally {
        model.dispose();
      }
    });
  },
);

test('the same weights given by two checkpoints are refused', async () => {
  await withDir(async (dir) => {
    await writeCheckpoint(join(dir, 'a'), llamaTensors(), { config: LLAMA_CONFIG });
    await writeCheckpoint(join(dir, 'b'), llamaTensors(), { config: LLAMA_CONFIG });
    await assert.rejects(
      initialModelConfig(tiny, [join(dir, 'a'), join(dir, 'b')]),
      (err) => isM4Error(err, 'E_USAGE') && /language\.embed is given by both/.test(err.message),
    );
  });
});

/** Writes `tensors` (LLaMA's, changed by `edit`) and expects --init-from to refuse with a message matching `pattern`. */
async function refused(edit: (tensors: RawTensor[]) => RawTensor[], pattern: RegExp, config: Record<string, unknown> = LLAMA_CONFIG) {
  await withDir(async (dir) => {
    await writeCheckpoint(dir, edit(llamaTensors()), { config });
    await assert.rejects(
      initialModelConfig(tiny, [dir]),
      (err) => isM4Error(err) && err.code !== 'E_INTERNAL' && pattern.test(err.message),
      `expected ${pattern}`,
    );
  });
}

test('refused by name and shape: a missing tensor, an unexpected one, a transposed one, an integer weight', async () => {
  await refused(
    (t) => t.filter((x) => x.name !== 'model.layers.3.mlp.up_proj.weight'),
    /missing model\.layers\.3\.mlp\.up_proj\.weight \(expected \[128,64\]\)/,
  );
  await refused((t) => [...t, tensor('model.layers.0.self_attn.q_proj.bias', [64])], /unexpected model\.layers\.0\.self_attn\.q_proj\.bias \[64\]/);
  await refused(
    (t) => t.map((x) => (x.name === 'model.layers.1.mlp.down_proj.weight' ? { ...x, shape: [128, 64] } : x)),
    /model\.layers\.1\.mlp\.down_proj\.weight has shape \[128,64\], expected \[64,128\], PyTorch's Linear \[out, in\]/,
  );
  await refused(
    (t) => t.map((x) => (x.name === 'model.norm.weight' ? { ...x, dtype: 'I32' as const, values: Array(64).fill(1) } : x)),
    /model\.norm\.weight is I32, expected a float dtype/,
  );
  // Without config.json the shape is the preset's, and the names alone tell the layout.
  await withDir(async (dir) => {
    await writeCheckpoint(
      dir,
      llamaTensors().filter((x) => x.name !== 'lm_head.weight'),
    );
    await assert.rejects(initialModelConfig(tiny, [dir]), (err) => isM4Error(err, 'E_INPUT') && /missing lm_head\.weight/.test(err.message));
  });
});

test('refused: config.json settings the model does not have (grouped-query attention, another vocabulary, rope scaling, vector gates)', async () => {
  await refused((t) => t, /num_key_value_heads is 2; the model needs 4 \(IDEFICS has no grouped-query attention\)/, {
    ...LLAMA_CONFIG,
    num_key_value_heads: 2,
  });
  await refused((t) => t, /vocab_size is 32001; the model needs 32000/, { ...LLAMA_CONFIG, vocab_size: 32001 });
  await refused((t) => t, /rope_scaling is set/, { ...LLAMA_CONFIG, rope_scaling: { type: 'linear', factor: 2 } });
  await refused((t) => t, /model_type "gpt2" is not one of llama, clip, clip_vision_model, idefics/, { ...LLAMA_CONFIG, model_type: 'gpt2' });
  await withDir(async (dir) => {
    await writeCheckpoint(dir, [tensor('model.vision_model.embeddings.class_embedding', [32])], {
      config: { ...ideficsConfigJson(tiny), alpha_type: 'vector' },
    });
    await assert.rejects(
      initialModelConfig(tiny, [dir]),
      (err) => isM4Error(err, 'E_INPUT') && /alpha_type is "vector"; the model needs "float"/.test(err.message),
    );
  });
});

test('refused: truncated files, headers that lie about offsets or size, wrong index entries', async () => {
  await withDir(async (dir) => {
    const good = safetensorsBytes([tensor('model.norm.weight', [64], 'F32'), tensor('lm_head.weight', [4, 64], 'F32')]);
    const cases: [string, Buffer, RegExp][] = [
      ['truncated', good.subarray(0, good.length - 10), /truncated: tensor lm_head\.weight ends at data byte 1280, the file holds 1270 bytes/],
      ['short', good.subarray(0, 5), /fewer than the 8 of the header length/],
      ['header-cut', good.subarray(0, 40), /truncated: its header length field says \d+ bytes/],
      [
        'beyond',
        rawSafetensors({ a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] }, b: { dtype: 'F32', shape: [4], data_offsets: [16, 32] } }, Buffer.alloc(24)),
        /truncated: tensor b ends at data byte 32, the file holds 24/,
      ],
      [
        'overlap',
        rawSafetensors({ a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] }, b: { dtype: 'F32', shape: [4], data_offsets: [8, 24] } }, Buffer.alloc(24)),
        /tensor b at bytes 8\.\.24 overlaps/,
      ],
      ['gap', rawSafetensors({ a: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } }, Buffer.alloc(16)), /bytes 0\.\.8 before tensor a belong to no tensor/],
      ['size', rawSafetensors({ a: { dtype: 'F32', shape: [4], data_offsets: [0, 8] } }, Buffer.alloc(8)), /offsets 0\.\.8 hold 8 bytes, F32 \[4\] needs 16/],
      ['dtype', rawSafetensors({ a: { dtype: 'Q4', shape: [4], data_offsets: [0, 8] } }, Buffer.alloc(8)), /dtype "Q4"/],
      ['not-json', Buffer.concat([Buffer.from([4, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{no}')]), /header is not JSON/],
      ['cap', Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 1, 0, 0]), Buffer.alloc(16)]), /over the format's cap of 100,000,000/],
    ];
    for (const [name, bytes, pattern] of cases) {
      await writeFile(join(dir, `${name}.safetensors`), bytes);
      await assert.rejects(
        initialModelConfig(tiny, [join(dir, `${name}.safetensors`)]),
        (err) => isM4Error(err, 'E_INPUT') && pattern.test(err.message),
        `${name}: ${pattern}`,
      );
    }
    // An index placing a tensor in a shard that lacks it, or a shard outside the folder.
    const sharded = join(dir, 'sharded');
    await writeCheckpoint(sharded, llamaTensors(), { config: LLAMA_CONFIG, shards: 2 });
    const index = JSON.parse(await readFile(join(sharded, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> };
    index.weight_map['model.norm.weight'] = 'model-00001-of-00002.safetensors';
    await writeFile(join(sharded, 'model.safetensors.index.json'), JSON.stringify(index));
    await assert.rejects(
      initialModelConfig(tiny, [sharded]),
      (err) => isM4Error(err, 'E_INPUT') && /places model\.norm\.weight in model-00001-of-00002\.safetensors, which holds no such tensor/.test(err.message),
    );
    index.weight_map['model.norm.weight'] = '../model-00002-of-00002.safetensors';
    await writeFile(join(sharded, 'model.safetensors.index.json'), JSON.stringify(index));
    await assert.rejects(initialModelConfig(tiny, [sharded]), (err) => isM4Error(err, 'E_INPUT') && /not a file beside the index/.test(err.message));
    await assert.rejects(initialModelConfig(tiny, [join(dir, 'nothing-here')]), (err) => isM4Error(err, 'E_NOT_FOUND'));
  });
  assert.equal(bf16Bits(1.5), 0x3fc0);
  assert.equal(tf.memory().numTensors, 0);
});
