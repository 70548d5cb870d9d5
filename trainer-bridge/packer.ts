import { M4Error } from '../core/errors.ts';
import type { MixedSample } from '../mixer/mixture-stream-types.ts';
import type { ImageRef } from './sample-parts.ts';
import { newTally, tallyOf, type Tally } from './tally.ts';
import { sampleUnits, type Unit, type UnitOptions } from './units.ts';

/** A sample with the stream's state taken just before it was read: resuming from that state reads it again. */
export interface PositionedSample<S> {
  sample: MixedSample;
  before: S;
}

/** One sequence of a batch: its ids (unpadded) and its images in order. */
export interface PackedRow {
  ids: number[];
  images: ImageRef[];
  tokensBySource: Record<string, number>;
  imagesBySource: Record<string, number>;
}

/** Where the next batch starts: re-read the stream from `state` and skip that sample's first `skipUnits` units. */
export interface ResumePoint<S> {
  state: S;
  skipUnits: number;
}

/** The rows of one batch (always `batchSize` of them; empty rows only at a finite stream's end). */
export interface BatchPlan<S> {
  rows: PackedRow[];
  /** Where the batch after this one starts. */
  next: ResumePoint<S>;
}

export interface PackOptions extends UnitOptions {
  batchSize: number;
}

export interface PackContext<S> {
  tally: Tally;
  /** Units of a sample already emitted by an earlier run (the first sample's, or one part-emitted in another world). */
  skipUnits?: (sample: MixedSample, first: boolean) => number;
  /** The stream's state after its last sample, for the plan of a final partial batch. */
  endState: () => S;
}

/**
 * Packs units into batches of `batchSize` rows: each unit goes whole into the first row of the batch it fits (tokens
 * within `seqLen`, images within `maxImages`); when it fits none and every row is open, the batch is emitted and the
 * unit opens the next one. Units of batch k all precede those of batch k+1 in stream order, so a batch boundary is a
 * single resume point. A finite stream's last batch is filled with empty rows.
 */
export async function* packBatches<S>(
  samples: AsyncIterable<PositionedSample<S>>,
  options: PackOptions,
  context: PackContext<S>,
): AsyncGenerator<BatchPlan<S>> {
  const { tally } = context;
  let first = true;
  let rows: PackedRow[] = [];
  const place = (unit: Unit): boolean => {
    let row = rows.find((r) => r.ids.length + unit.ids.length <= options.seqLen && r.images.length + unit.images.length <= options.maxImages);
    if (!row) {
      if (rows.length === options.batchSize) return false;
      row = { ids: [], images: [], tokensBySource: {}, imagesBySource: {} };
      rows.push(row);
    }
    for (const id of unit.ids) row.ids.push(id);
    row.images.push(...unit.images);
    row.tokensBySource[unit.source] = (row.tokensBySource[unit.source] ?? 0) + unit.ids.length;
    row.imagesBySource[unit.source] = (row.imagesBySource[unit.source] ?? 0) + unit.images.length;
    return true;
  };
  const emit = (next: ResumePoint<S>): BatchPlan<S> => {
    while (rows.length < options.batchSize) rows.push({ ids: [], images: [], tokensBySource: {}, imagesBySource: {} });
    for (const row of rows) {
      for (const [source, n] of Object.entries(row.tokensBySource)) tallyOf(tally, source).packedTokens += n;
      for (const [source, n] of Object.entries(row.imagesBySource)) tallyOf(tally, source).packedImages += n;
    }
    const plan = { rows, next };
    rows = [];
    return plan;
  };

  for await (const { sample, before } of samples) {
    const skip = context.skipUnits?.(sample, first) ?? 0;
    first = false;
    let units: Unit[];
    if (skip > 0) {
      // Units an earlier run emitted: counted there. Only the rest are read into this run's tally.
      const all = sampleUnits(sample, options, newTally());
      if (skip >= all.length) {
        throw new M4Error(
          'E_USAGE',
          'bridge',
          `the resume state has ${skip} units of sample ${sample.source}/${sample.key} (position ${sample.position}) emitted, but it makes ${all.length}: ` +
            `the state does not belong to this mixture and shape`,
        );
      }
      units = all.slice(skip);
      const t = tallyOf(tally, sample.source);
      for (const unit of units) {
        t.inputTokens += unit.ids.length;
        t.inputImages += unit.images.length;
      }
    } else {
      units = sampleUnits(sample, options, tally);
    }
    const offset = skip;
    for (const [i, unit] of units.entries()) {
      if (place(unit)) continue;
      yield emit({ state: before, skipUnits: offset + i });
      place(unit);
    }
  }
  if (rows.length > 0) yield emit({ state: context.endState(), skipUnits: 0 });
}
