#!/usr/bin/env python3
"""IdeficsForVisionText2Text's forward pass in NumPy, written from transformers' own code (models/idefics:
modeling_idefics.py, perceiver.py, vision.py) and independent of m4data's trainer: it reads a checkpoint in
transformers' layout (config.json, model.safetensors or a sharded set with model.safetensors.index.json) and one
batch as the bridge dumps it (input_ids.npy, attention_mask.npy, labels.npy, pixel_values.npy,
image_attention_mask.npy), and writes the logits [B, L, vocab + added] as float64 .npy. It prints one JSON line:
{"loss": mean next-token cross-entropy over labels != -100, "tokens": how many}.

Computed in float64, except what transformers computes in float32 on purpose (the rotary tables of IdeficsEmbedding).
Like transformers, every image slot is encoded (empty ones are zeros) and masked out by the image attention mask.

    python3 idefics_reference.py CHECKPOINT_DIR BATCH_DIR LOGITS_OUT.npy
"""
import json
import math
import os
import struct
import sys

import numpy as np

MIN = np.finfo(np.float64).min  # transformers masks with its dtype's lowest value (torch.finfo(dtype).min)


def read_safetensors(path):
    """name -> float64 array; F32, F16, BF16 (top half of a float32: a 16-bit shift) and F64."""
    with open(path, 'rb') as f:
        (length,) = struct.unpack('<Q', f.read(8))
        header = json.loads(f.read(length).decode('utf-8'))
        data = f.read()
    out = {}
    for name, entry in header.items():
        if name == '__metadata__':
            continue
        begin, end = entry['data_offsets']
        raw = data[begin:end]
        dtype = entry['dtype']
        if dtype == 'F32':
            values = np.frombuffer(raw, '<f4')
        elif dtype == 'F16':
            values = np.frombuffer(raw, '<f2')
        elif dtype == 'BF16':
            values = (np.frombuffer(raw, '<u2').astype('<u4') << 16).view('<f4')
        elif dtype == 'F64':
            values = np.frombuffer(raw, '<f8')
        else:
            continue  # integer buffers (position_ids) are not weights
        out[name] = values.astype(np.float64).reshape(entry['shape'])
    return out


def read_checkpoint(folder):
    index = os.path.join(folder, 'model.safetensors.index.json')
    if os.path.exists(index):
        with open(index) as f:
            shards = sorted(set(json.load(f)['weight_map'].values()))
        weights = {}
        for shard in shards:
            weights.update(read_safetensors(os.path.join(folder, shard)))
        return weights
    return read_safetensors(os.path.join(folder, 'model.safetensors'))


def layer_norm(x, weight, bias, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def rms_norm(x, weight, eps):
    """IdeficsRMSNorm: x * rsqrt(mean(x^2) + eps), times the weight."""
    return weight * (x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps))


def softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def linear(x, w, b=None):
    """nn.Linear: weight is [out, in]."""
    y = x @ w.T
    return y if b is None else y + b


_erf = np.vectorize(math.erf)


def activation(x, name):
    if name == 'gelu':
        return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))
    if name == 'quick_gelu':
        return x / (1.0 + np.exp(-1.702 * x))
    raise SystemExit('unknown hidden_act ' + name)


def heads_of(x, n):
    """[T, n * d] -> [n, T, d]"""
    return x.reshape(x.shape[0], n, -1).transpose(1, 0, 2)


def merge_heads(x):
    """[n, T, d] -> [T, n * d]"""
    return x.transpose(1, 0, 2).reshape(x.shape[1], -1)


def attention(q, k, v, mask=None):
    """Per head: softmax(q k^T / sqrt(d) + mask) v."""
    scores = q @ k.transpose(0, 2, 1) * q.shape[-1] ** -0.5
    if mask is not None:
        scores = scores + mask
    return softmax(scores) @ v


def vision_tower(W, vc, pixels):
    """IdeficsVisionTransformer on one image [3, S, S]: last_hidden_state [1 + patches, dim]."""
    p = vc['patch_size']
    g = pixels.shape[-1] // p
    pre = 'model.vision_model.'
    # Conv2d(3, dim, kernel p, stride p, no bias) as a matmul over flattened (channel, row, column) patches.
    patches = pixels.reshape(3, g, p, g, p).transpose(1, 3, 0, 2, 4).reshape(g * g, 3 * p * p)
    conv = W[pre + 'embeddings.patch_embedding.weight']
    x = patches @ conv.reshape(conv.shape[0], -1).T
    x = np.concatenate([W[pre + 'embeddings.class_embedding'][None, :], x], 0)
    x = x + W[pre + 'embeddings.position_embedding.weight']
    eps = vc['layer_norm_eps']
    x = layer_norm(x, W[pre + 'pre_layrnorm.weight'], W[pre + 'pre_layrnorm.bias'], eps)
    n = vc['num_attention_heads']
    for i in range(vc['num_hidden_layers']):
        at = pre + 'encoder.layers.%d.' % i
        h = layer_norm(x, W[at + 'layer_norm1.weight'], W[at + 'layer_norm1.bias'], eps)
        q, k, v = (linear(h, W[at + 'self_attn.%s_proj.weight' % s], W[at + 'self_attn.%s_proj.bias' % s]) for s in 'qkv')
        out = merge_heads(attention(heads_of(q, n), heads_of(k, n), heads_of(v, n)))
        x = x + linear(out, W[at + 'self_attn.out_proj.weight'], W[at + 'self_attn.out_proj.bias'])
        h = layer_norm(x, W[at + 'layer_norm2.weight'], W[at + 'layer_norm2.bias'], eps)
        h = activation(linear(h, W[at + 'mlp.fc1.weight'], W[at + 'mlp.fc1.bias']), vc['hidden_act'])
        x = x + linear(h, W[at + 'mlp.fc2.weight'], W[at + 'mlp.fc2.bias'])
    return x  # post_layernorm touches only the pooled output, which IDEFICS does not use


def perceiver(W, pc, context):
    """IdeficsPerceiverResampler on one image's vision tokens: [latents, dim]. nn.LayerNorm eps 1e-5."""
    pre = 'model.perceiver_resampler.'
    ln = lambda x, name: layer_norm(x, W[name + '.weight'], W[name + '.bias'], 1e-5)
    n = pc['resampler_n_heads']
    latents = W[pre + 'latents']
    for i in range(pc['resampler_depth']):
        at = pre + 'blocks.%d.' % i
        ctx = ln(context, at + '0.context_layer_norm')
        lat = ln(latents, at + '0.latents_layer_norm')
        q = heads_of(linear(lat, W[at + '0.q_proj.weight']), n)
        both = np.concatenate([ctx, lat], 0)
        k = heads_of(linear(both, W[at + '0.k_proj.weight']), n)
        v = heads_of(linear(both, W[at + '0.v_proj.weight']), n)
        if pc.get('qk_layer_norms_perceiver', False):
            q = ln(q, at + '0.q_layer_norm')
            k = ln(k, at + '0.k_layer_norm')
        latents = linear(merge_heads(attention(q, k, v)), W[at + '0.output_proj.weight']) + latents
        h = np.maximum(linear(ln(latents, at + '1.ln'), W[at + '1.fc.weight']), 0.0)
        latents = linear(h, W[at + '1.c_proj.weight']) + latents
    return ln(latents, pre + 'layer_norm')


def rotary_tables(head_dim, length):
    """IdeficsEmbedding: inverse frequencies, positions x frequencies, cos and sin, all in float32 (base 10,000)."""
    inv_freq = (1.0 / (np.float32(10000) ** (np.arange(0, head_dim, 2).astype(np.float32) / np.float32(head_dim)))).astype(np.float32)
    t = np.arange(max(length, 2048)).astype(np.float32)
    freqs = np.outer(t, inv_freq).astype(np.float32)
    emb = np.concatenate([freqs, freqs], -1)
    return np.cos(emb).astype(np.float64), np.sin(emb).astype(np.float64)


def rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], -1)


def main():
    ckpt, batch_dir, out_path = sys.argv[1:4]
    with open(os.path.join(ckpt, 'config.json')) as f:
        cfg = json.load(f)
    W = read_checkpoint(ckpt)
    load = lambda name: np.load(os.path.join(batch_dir, name + '.npy'))
    ids, attention_mask, labels = load('input_ids'), load('attention_mask'), load('labels')
    pixels, image_mask = load('pixel_values').astype(np.float64), load('image_attention_mask')
    B, L = ids.shape
    N = pixels.shape[1]
    V, d, n = cfg['vocab_size'], cfg['hidden_size'], cfg['num_attention_heads']
    eps = cfg['rms_norm_eps']
    hd = d // n

    # Every image slot through the ViT and the resampler, as transformers does: [B, N * latents, vision dim].
    images = np.stack([np.concatenate([perceiver(W, cfg['perceiver_config'], vision_tower(W, cfg['vision_config'], pixels[b, i])) for i in range(N)], 0) for b in range(B)])
    latents = cfg['perceiver_config']['resampler_n_latents']
    # image_attention_mask [B, L, N] repeated per latent, inverted; the gate is 0 where a token sees no image.
    cross_mask = np.where(np.repeat(image_mask, latents, axis=-1) == 1, 0.0, MIN)[:, None, :, :]
    cross_gate = (image_mask == 1).any(-1)

    # IdeficsDecoupledEmbedding: ids >= V come from the added table.
    embed = W['model.embed_tokens.weight']
    added = W['model.embed_tokens.additional_embedding.weight']
    h = np.where((ids >= V)[..., None], added[np.maximum(ids - V, 0)], embed[np.minimum(ids, V - 1)])

    # position_ids = cumsum(attention_mask) - 1, padding at 1; causal mask with padding keys masked.
    positions = np.cumsum(attention_mask, -1) - 1
    positions[attention_mask == 0] = 1
    allowed = np.tril(np.ones((L, L), bool))[None] & (attention_mask[:, None, :] == 1)
    self_mask = np.where(allowed, 0.0, MIN)[:, None, :, :]
    cos_table, sin_table = rotary_tables(hd, L)

    def attend(q, k, v, mask):  # [B, T, n*hd] x [B, S, n*hd] -> [B, T, n*hd]
        return np.stack([merge_heads(attention(heads_of(q[b], n), heads_of(k[b], n), heads_of(v[b], n), mask[b])) for b in range(B)])

    def mlp(x, at):
        gate = linear(x, W[at + 'gate_proj.weight'])
        return linear(gate / (1.0 + np.exp(-gate)) * linear(x, W[at + 'up_proj.weight']), W[at + 'down_proj.weight'])

    interval = cfg['cross_layer_interval']
    for idx in range(cfg['num_hidden_layers']):
        if idx % interval == 0:
            at = 'model.gated_cross_attn_layers.%d.' % (idx // interval)
            x = rms_norm(h, W[at + 'input_layernorm.weight'], eps)
            q = linear(x, W[at + 'cross_attn.q_proj.weight'])
            k = linear(images, W[at + 'cross_attn.k_proj.weight'])
            v = linear(images, W[at + 'cross_attn.v_proj.weight'])
            if cfg.get('qk_layer_norms', False):
                norm_heads = lambda t, name: rms_norm(t.reshape(t.shape[0], t.shape[1], n, hd), W[at + 'cross_attn.%s.weight' % name], eps).reshape(t.shape)
                q, k = norm_heads(q, 'q_layer_norm'), norm_heads(k, 'k_layer_norm')
            out = linear(attend(q, k, v, cross_mask), W[at + 'cross_attn.o_proj.weight'])
            out[~cross_gate] = 0.0
            h = h + np.tanh(W[at + 'alpha_cross_attn']) * out
            h = h + np.tanh(W[at + 'alpha_dense']) * mlp(rms_norm(h, W[at + 'post_attention_layernorm.weight'], eps), at + 'mlp.')
        at = 'model.layers.%d.' % idx
        x = rms_norm(h, W[at + 'input_layernorm.weight'], eps)
        q, k, v = (linear(x, W[at + 'self_attn.%s_proj.weight' % s]) for s in 'qkv')
        cos = cos_table[positions]
        sin = sin_table[positions]

        def rope(t):  # per head: t * cos + rotate_half(t) * sin, at each token's position
            t = t.reshape(B, L, n, hd)
            return (t * cos[:, :, None, :] + rotate_half(t) * sin[:, :, None, :]).reshape(B, L, d)

        h = h + linear(attend(rope(q), rope(k), v, self_mask), W[at + 'self_attn.o_proj.weight'])
        h = h + mlp(rms_norm(h, W[at + 'post_attention_layernorm.weight'], eps), at + 'mlp.')
    h = rms_norm(h, W['model.norm.weight'], eps)
    # IdeficsDecoupledLinear: the frozen outputs, then the added ones.
    logits = np.concatenate([linear(h, W['lm_head.weight']), linear(h, W['lm_head.additional_fc.weight'])], -1)

    # Causal LM loss: position t predicts labels[t + 1]; -100 ignored; the mean over the rest.
    shifted = logits[:, :-1].reshape(-1, logits.shape[-1])
    targets = labels[:, 1:].reshape(-1)
    keep = targets != -100
    top = shifted.max(-1, keepdims=True)
    lse = (np.log(np.exp(shifted - top).sum(-1, keepdims=True)) + top)[:, 0]
    losses = lse[keep] - shifted[keep, targets[keep]]
    np.save(out_path, logits.astype('<f8'))
    print(json.dumps({'loss': float(losses.mean()), 'tokens': int(keep.sum())}))


if __name__ == '__main__':
    main()
