import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { TENSOR_ORDER, type Batch } from './batch.ts';
import { dtypeOf, npyParts, type NpyArray } from './npy.ts';
import { tensorShapes } from './tensors.ts';

/** The five tensors of a batch in TENSOR_ORDER, with their NumPy names, dtypes and shapes. */
export function batchArrays(batch: Batch): NpyArray[] {
  const data = {
    input_ids: batch.inputIds,
    attention_mask: batch.attentionMask,
    labels: batch.labels,
    pixel_values: batch.pixelValues,
    image_attention_mask: batch.imageAttentionMask,
  };
  const shapes = new Map(tensorShapes(batch));
  return TENSOR_ORDER.map((name) => ({ name, dtype: dtypeOf(data[name]), shape: shapes.get(name)!, data: data[name] }));
}

/** `DIR/batch-000042/<name>.npy`, one file per tensor. */
export async function writeBatchDir(dir: string, index: number, batch: Batch): Promise<string> {
  const folder = join(dir, `batch-${String(index).padStart(6, '0')}`);
  await mkdir(folder, { recursive: true });
  for (const array of batchArrays(batch)) await writeFile(join(folder, `${array.name}.npy`), npyParts(array.shape, array.data));
  return folder;
}

/** Writes the batch's five arrays, in TENSOR_ORDER, to a stream, waiting for it to drain (backpressure). */
export async function writeBatchStream(stream: Writable, batch: Batch): Promise<void> {
  for (const array of batchArrays(batch)) {
    for (const part of npyParts(array.shape, array.data)) {
      if (!stream.write(part)) await Promise.race([once(stream, 'drain'), once(stream, 'close')]);
    }
  }
}
