import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { M4Error } from '../core/errors.ts';
import { CLIP_MEAN, CLIP_STD, IMAGE_SIZE } from './batch.ts';
import type { ImageRef } from './sample-parts.ts';

/** How an image becomes 224x224: squashed whole (IDEFICS's processor), or the shortest side resized and the centre cut. */
export type ImageTransform = 'resize' | 'center-crop';
export const IMAGE_TRANSFORMS: readonly ImageTransform[] = ['resize', 'center-crop'];

export interface PixelPoolOptions {
  transform?: ImageTransform;
  /** Worker threads (default: the cores available). */
  workers?: number;
  /** Images in flight per worker (default 2: sharp's I/O and decode overlap, measured best near 4 on 2 cores). */
  perWorker?: number;
  /** Decompression-bomb limit (default 134,217,728 pixels, as the build's). */
  maxPixels?: number;
}

/** Turns image bytes into CLIP-normalised CHW pixels. */
export interface PixelDecoder {
  decode(image: ImageRef): Promise<Float32Array>;
  close(): Promise<void>;
}

interface Task {
  id: number;
  image: ImageRef;
  resolve: (pixels: Float32Array) => void;
  reject: (err: unknown) => void;
}

interface Slot {
  worker: Worker;
  busy: Map<number, Task>;
}

/**
 * A pool of worker threads running sharp (pixel-worker.mjs). Tasks beyond the pool's in-flight limit wait in a queue;
 * callers bound how many they submit (the bridge's prefetch), so the queue stays as small as a few batches.
 */
export class PixelPool implements PixelDecoder {
  private readonly slots: Slot[] = [];
  private readonly queue: Task[] = [];
  private readonly perWorker: number;
  private nextId = 0;
  private closed = false;

  constructor(options: PixelPoolOptions = {}) {
    this.perWorker = options.perWorker ?? 2;
    const workerData = {
      size: IMAGE_SIZE,
      mean: [...CLIP_MEAN],
      std: [...CLIP_STD],
      transform: options.transform ?? 'resize',
      maxPixels: options.maxPixels ?? 134_217_728,
    };
    const count = options.workers ?? availableParallelism();
    for (let i = 0; i < count; i++) {
      const worker = new Worker(new URL('./pixel-worker.mjs', import.meta.url), { workerData });
      const slot: Slot = { worker, busy: new Map() };
      worker.on('message', (message: { id: number; pixels?: Float32Array; error?: string }) => this.settle(slot, message));
      worker.on('error', (err) => this.failAll(err));
      worker.unref(); // an idle pool never keeps the process alive; busy workers are ref'd in dispatch
      this.slots.push(slot);
    }
  }

  decode(image: ImageRef): Promise<Float32Array> {
    if (this.closed) return Promise.reject(new M4Error('E_USAGE', 'bridge', 'the pixel pool is closed'));
    return new Promise((resolve, reject) => {
      this.queue.push({ id: this.nextId++, image, resolve, reject });
      this.dispatch();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.failAll(new M4Error('E_USAGE', 'bridge', 'the pixel pool was closed with images in flight'));
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      const slot = this.slots.reduce((a, b) => (b.busy.size < a.busy.size ? b : a));
      if (slot.busy.size >= this.perWorker) return;
      const task = this.queue.shift()!;
      slot.busy.set(task.id, task);
      slot.worker.ref();
      const bytes = new Uint8Array(task.image.bytes); // a copy: the tar's buffer stays here, the copy is transferred
      slot.worker.postMessage({ id: task.id, bytes }, [bytes.buffer]);
    }
  }

  private settle(slot: Slot, message: { id: number; pixels?: Float32Array; error?: string }): void {
    const task = slot.busy.get(message.id);
    if (!task) return;
    slot.busy.delete(message.id);
    if (slot.busy.size === 0) slot.worker.unref();
    if (message.pixels) task.resolve(message.pixels);
    else {
      const { image } = task;
      task.reject(
        new M4Error('E_INPUT', 'bridge', `${image.shard}: sample ${image.key}: image ${image.field} cannot be decoded: ${message.error}`, {
          shard: image.shard,
          key: image.key,
          field: image.field,
        }),
      );
    }
    this.dispatch();
  }

  private failAll(err: unknown): void {
    for (const slot of this.slots) {
      for (const task of slot.busy.values()) task.reject(err);
      slot.busy.clear();
    }
    for (const task of this.queue.splice(0)) task.reject(err);
  }
}
