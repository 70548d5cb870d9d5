import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fetchRanges, sampleIn } from '../mixer/range-fetch.ts';
import { SourceDataset } from '../mixer/source-dataset.ts';
import { writeSyntheticDataset } from '../sandbox/datasets.ts';
import type { ByteRange } from '../shards/storage/storage.ts';

// A range that arrives in chunks (a socket's) is decoded from those chunks: every sample as the shard holds it, one
// lying inside a chunk as a view of that chunk (no copy of the range), one spanning chunks put together.

/** Bytes of a storage read handed over in chunks of `size` (odd, so tar blocks straddle them), recorded. */
function rechunk(dataset: SourceDataset, size: number, served: Buffer[]): void {
  const read = dataset.storage.read.bind(dataset.storage);
  dataset.storage.read = async function* (key: string, range?: ByteRange) {
    for await (const chunk of read(key, range)) {
      for (let at = 0; at < chunk.byteLength; at += size) {
        const piece = Buffer.from(chunk.buffer, chunk.byteOffset + at, Math.min(size, chunk.byteLength - at));
        served.push(piece);
        yield piece;
      }
    }
  };
}

test('samples read in chunks are the samples of the shard, views of the chunks where they lie inside one', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'm4-range-fetch-'));
  try {
    for (const layout of ['pair', 'document'] as const) {
      const location = join(dir, layout);
      await writeSyntheticDataset({ location, source: layout, layout, shardSamples: [40] });
      const direct = await SourceDataset.open(location);
      const chunked = await SourceDataset.open(location);
      const served: Buffer[] = [];
      rechunk(chunked, 65_537, served);
      const entries = await direct.entries(0);
      // Two ranges with a gap between them, as a rank that reads only its own samples asks.
      const ranges = [
        { start: entries[0]!.offset, end: entries[14]!.offset + entries[14]!.size },
        { start: entries[20]!.offset, end: entries.at(-1)!.offset + entries.at(-1)!.size },
      ];
      const whole = await fetchRanges(direct, 0, ranges);
      const pieces = await fetchRanges(chunked, 0, ranges);
      assert.equal(pieces.pieces.length, served.length);
      let views = 0;
      let spanning = 0;
      for (const entry of [...entries.slice(0, 15), ...entries.slice(20)]) {
        const expected = sampleIn(whole, 'shard', entry).sample;
        const got = sampleIn(pieces, 'shard', entry).sample;
        assert.ok(expected && got, `${layout} sample ${entry.key}`);
        assert.deepEqual(Object.keys(got.fields).sort(), Object.keys(expected.fields).sort());
        for (const [field, bytes] of Object.entries(expected.fields)) assert.ok(got.fields[field]!.equals(bytes), `${layout} ${entry.key}.${field}`);
        const inside = served.find((c) => got.fields.json!.buffer === c.buffer);
        if (inside) views++;
        else spanning++;
      }
      assert.ok(views > 0, `${layout}: no sample was a view of its chunk (the chunks were copied)`);
      assert.ok(spanning > 0, `${layout}: no sample spans two chunks (the test reads too little)`);
      // A sample between the ranges was not read: it is reported, not made up.
      assert.match(sampleIn(pieces, 'shard', entries[17]!).problem ?? '', /ends before the end of sample/);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
