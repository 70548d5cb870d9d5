import { test } from 'node:test';
import assert from 'node:assert/strict';
import { documentSample, pairSample } from './helpers/bridge-mixture.ts';
import { attendedImages, packAll, row } from './helpers/bridge-pack.ts';
import { PIXELS_PER_IMAGE } from '../trainer-bridge/batch.ts';
import { tallyOf } from '../trainer-bridge/tally.ts';

// Sequences written out by hand. LLaMA ids: "Hello world" = 15043 3186, "A cat." = 319 6635 29889,
// "One two three four five six seven eight" = 3118 1023 2211 3023 5320 4832 9881 9475.
const S = 1; // <s>
const E = 2; // </s>
const F = 32000; // <fake_token_around_image>
const I = 32001; // <image>
const HELLO = [15043, 3186];
const CAT = [319, 6635, 29889];
const EIGHT = [3118, 1023, 2211, 3023, 5320, 4832, 9881, 9475];
const EIGHT_TEXT = 'One two three four five six seven eight';
const X = -100; // label ignored
const _ = -1; // attends to no image

const image = (marker: number) => Buffer.from([marker, 0xd8, 0xff]);
const pad = (values: number[], length: number, fill: number) => [...values, ...Array(length - values.length).fill(fill)];
/** Which pixel slots of row b hold an image, by the marker value the test decoder filled them with (0: empty). */
const slotMarkers = (pixels: Float32Array, b: number, N: number) => Array.from({ length: N }, (_, n) => pixels[(b * N + n) * PIXELS_PER_IMAGE]!);

test('golden: a pair', async () => {
  const { batches } = await packAll([pairSample('laion', 'p', 'Hello world', image(7))], { seqLen: 16, maxImages: 2, batchSize: 1 });
  assert.equal(batches.length, 1);
  const [batch] = batches as [NonNullable<(typeof batches)[0]>];
  const ids = [S, F, I, F, ...HELLO, E];
  assert.deepEqual(row(batch.inputIds, 0, 16), pad(ids, 16, 0));
  assert.deepEqual(row(batch.attentionMask, 0, 16), pad([1, 1, 1, 1, 1, 1, 1], 16, 0));
  assert.deepEqual(row(batch.labels, 0, 16), pad(ids, 16, X));
  assert.deepEqual(attendedImages(batch, 0), pad([_, _, 0, 0, 0, 0, 0], 16, _));
  assert.deepEqual(slotMarkers(batch.pixelValues, 0, 2), [7, 0]);
  assert.deepEqual(batch.stats, { tokensBySource: { laion: 7 }, imagesBySource: { laion: 1 }, paddingTokens: 9 });

  const masked = (await packAll([pairSample('laion', 'p', 'Hello world', image(7))], { seqLen: 16, maxImages: 2, batchSize: 1, maskImageTokens: true }))
    .batches[0]!;
  assert.deepEqual(row(masked.labels, 0, 16), pad([S, X, X, X, ...HELLO, E], 16, X));
});

test('golden: a document with two adjacent images', async () => {
  const { batches } = await packAll([documentSample('obelisc', 'd', [image(3), image(4), 'A cat.'])], { seqLen: 16, maxImages: 2, batchSize: 1 });
  const batch = batches[0]!;
  assert.deepEqual(row(batch.inputIds, 0, 16), pad([S, F, I, F, I, F, ...CAT, E], 16, 0));
  assert.deepEqual(attendedImages(batch, 0), pad([_, _, 0, 0, 1, 1, 1, 1, 1, 1], 16, _));
  assert.deepEqual(slotMarkers(batch.pixelValues, 0, 2), [3, 4]);
});

test('golden: a document with text before its first image', async () => {
  const { batches } = await packAll([documentSample('obelisc', 'd', ['Hello world', image(5), 'A cat.'])], { seqLen: 16, maxImages: 2, batchSize: 1 });
  const batch = batches[0]!;
  assert.deepEqual(row(batch.inputIds, 0, 16), pad([S, ...HELLO, F, I, F, ...CAT, E], 16, 0));
  assert.deepEqual(row(batch.labels, 0, 16), pad([S, ...HELLO, F, I, F, ...CAT, E], 16, X));
  assert.deepEqual(attendedImages(batch, 0), pad([_, _, _, _, 0, 0, 0, 0, 0, 0], 16, _));
});

test("golden: two samples packed in one sequence never see each other's images", async () => {
  const { batches } = await packAll([pairSample('laion', 'a', 'Hello world', image(1)), pairSample('pmd', 'b', 'A cat.', image(2))], {
    seqLen: 32,
    maxImages: 2,
    batchSize: 1,
  });
  assert.equal(batches.length, 1);
  const batch = batches[0]!;
  const ids = [S, F, I, F, ...HELLO, E, S, F, I, F, ...CAT, E];
  assert.deepEqual(row(batch.inputIds, 0, 32), pad(ids, 32, 0));
  assert.deepEqual(row(batch.attentionMask, 0, 32), pad(Array(15).fill(1), 32, 0));
  // The second sample's <s> and opening fake follow a </s>: no image until its own <image>.
  assert.deepEqual(attendedImages(batch, 0), pad([_, _, 0, 0, 0, 0, 0, _, _, 1, 1, 1, 1, 1, 1], 32, _));
  assert.deepEqual(slotMarkers(batch.pixelValues, 0, 2), [1, 2]);
  assert.deepEqual(batch.stats, { tokensBySource: { laion: 7, pmd: 8 }, imagesBySource: { laion: 1, pmd: 1 }, paddingTokens: 17 });
});

test('golden: a document longer than the sequence is cut into windows; a text-only window is dropped', async () => {
  // Laid out whole: <s> [img] 8 [img] 8 8 8 </s> = 40 tokens, for sequences of 16 (14 between <s> and </s>).
  const doc = documentSample('obelisc', 'long', [image(1), EIGHT_TEXT, image(2), EIGHT_TEXT, EIGHT_TEXT, EIGHT_TEXT]);
  const { batches, tally } = await packAll([doc], { seqLen: 16, maxImages: 2, batchSize: 2 });
  assert.equal(batches.length, 1);
  const batch = batches[0]!;
  // Window 1 ends before the second image (it would start at content offset 11, in the last quarter): 13 tokens.
  assert.deepEqual(row(batch.inputIds, 0, 16), pad([S, F, I, F, ...EIGHT, E], 16, 0));
  assert.deepEqual(attendedImages(batch, 0), pad([_, _, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 16, _));
  // Window 2 opens with that image and is filled to 16, cutting the next text after 3 tokens.
  assert.deepEqual(row(batch.inputIds, 1, 16), [S, F, I, F, ...EIGHT, 3118, 1023, 2211, E]);
  assert.deepEqual(attendedImages(batch, 1), [_, _, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual(
    [slotMarkers(batch.pixelValues, 0, 2), slotMarkers(batch.pixelValues, 1, 2)],
    [
      [1, 0],
      [2, 0],
    ],
  );
  // Window 3 (the last 5 + 8 text tokens, 15 laid out) has no image: dropped and counted.
  const t = tallyOf(tally, 'obelisc');
  assert.deepEqual(
    { input: t.inputTokens, added: t.addedTokens, packed: t.packedTokens, dropped: t.droppedTokens, windows: t.windows, droppedUnits: t.droppedUnits },
    { input: 40, added: 4, packed: 29, dropped: 15, windows: 3, droppedUnits: 1 },
  );
  assert.deepEqual({ input: t.inputImages, packed: t.packedImages, dropped: t.droppedImages }, { input: 2, packed: 2, dropped: 0 });
});

test('golden: an image over --max-images is removed with its placeholder tokens', async () => {
  const doc = documentSample('obelisc', 'many', ['Hello world', image(1), image(2), 'A cat.', image(3), 'A cat.']);
  const { batches, tally } = await packAll([doc], { seqLen: 32, maxImages: 2, batchSize: 1 });
  const batch = batches[0]!;
  // Whole: <s> Hello world <fake><image><fake><image><fake> A cat. <fake><image><fake> A cat. </s>; the third image's
  // three tokens go, the texts around it join.
  assert.deepEqual(row(batch.inputIds, 0, 32), pad([S, ...HELLO, F, I, F, I, F, ...CAT, ...CAT, E], 32, 0));
  assert.deepEqual(attendedImages(batch, 0), pad([_, _, _, _, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1], 32, _));
  assert.deepEqual(slotMarkers(batch.pixelValues, 0, 2), [1, 2]);
  const t = tallyOf(tally, 'obelisc');
  assert.deepEqual({ input: t.inputTokens, packed: t.packedTokens, dropped: t.droppedTokens }, { input: 18, packed: 15, dropped: 3 });
  assert.deepEqual({ input: t.inputImages, packed: t.packedImages, dropped: t.droppedImages }, { input: 3, packed: 2, dropped: 1 });
});

test('golden: a pair longer than the sequence keeps its image and the start of its caption', async () => {
  const { batches, tally } = await packAll([pairSample('laion', 'p', `${EIGHT_TEXT} ${EIGHT_TEXT}`, image(9))], { seqLen: 16, maxImages: 2, batchSize: 1 });
  assert.deepEqual(row(batches[0]!.inputIds, 0, 16), [S, F, I, F, ...EIGHT, 3118, 1023, 2211, E]);
  const t = tallyOf(tally, 'laion');
  assert.equal(t.inputTokens, 1 + 3 + 16 + 1);
  assert.deepEqual({ packed: t.packedTokens, truncated: t.truncatedTokens }, { packed: 16, truncated: 5 });
});

test('parts under 5 tokens are dropped and counted', async () => {
  const { batches, tally } = await packAll([documentSample('wikipedia', 'w', ['Hi'])], { seqLen: 16, maxImages: 2, batchSize: 1 });
  assert.equal(batches.length, 0);
  assert.deepEqual({ dropped: tallyOf(tally, 'wikipedia').droppedTokens, units: tallyOf(tally, 'wikipedia').droppedUnits }, { dropped: 3, units: 1 });
});
