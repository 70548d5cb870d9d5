import { once } from 'node:events';
import type { Writable } from 'node:stream';
import type { Batch, TensorName } from './batch.ts';
import { dtypeOf, npyParts, type NpyArray } from './npy.ts';
import { tensorShapes } from './tensors.ts';

/** The five tensors of a batch in TENSOR_ORDER, with their NumPy names, dtypes and shapes. */
export function batchArrays(batch: Batch): NpyArray[] {
  const data: Record<TensorName, NpyArray['data']> = {
    input_ids: batch.inputIds,
    attention_mask: batch.attentionMask,
    labels: batch.labels,
    pixel_values: batch.pixelValues,
    image_attention_mask: batch.imageAttentionMask,
  };
  return tensorShapes(batch).map(([name, shape]) => ({ name, dtype: dtypeOf(data[name]), shape, data: data[name] }));
}

/** Writes the batch's five arrays, in TENSOR_ORDER, to a stream, waiting for it to drain (backpressure). */
export async function writeBatchStream(stream: Writable, batch: Batch): Promise<void> {
  for (const array of batchArrays(batch)) {
    for (const part of npyParts(array.shape, array.data)) {
      if (!stream.write(part)) await Promise.race([once(stream, 'drain'), once(stream, 'close')]);
    }
  }
}
