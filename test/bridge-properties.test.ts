import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { documentSample, pairSample, type SampleSpec } from './helpers/bridge-mixture.ts';
import { attendedImages, packAll } from './helpers/bridge-pack.ts';
import { countTokens, documentSegments, END_OF_DOCUMENT, EOS, IMAGE_TOKEN } from '../trainer-bridge/token-layout.ts';
import { PIXELS_PER_IMAGE } from '../trainer-bridge/batch.ts';
import { pendingTokens } from '../trainer-bridge/tally.ts';

const WORDS = ['a', 'cat', 'on', 'the', 'river', 'Bridge', 'morning,', 'light.', '42', 'über', '\n\n'];
const text = fc.array(fc.constantFrom(...WORDS), { minLength: 1, maxLength: 40 }).map((w) => w.join(' '));
const docText = fc.oneof({ weight: 5, arbitrary: text }, { weight: 1, arbitrary: fc.tuple(text, text).map(([a, b]) => `${a} ${END_OF_DOCUMENT} ${b}`) });
type Item = { text: string } | { image: true };
const items = fc.array(
  fc.oneof(
    docText.map((t): Item => ({ text: t })),
    fc.constant<Item>({ image: true }),
  ),
  { minLength: 1, maxLength: 14 },
);
const sampleSpec = fc.oneof(
  text.map((caption) => ({ kind: 'pair' as const, caption })),
  items.map((list) => ({ kind: 'document' as const, items: list })),
);
const settings = fc.record({ seqLen: fc.integer({ min: 16, max: 80 }), maxImages: fc.integer({ min: 1, max: 4 }), batchSize: fc.integer({ min: 1, max: 3 }) });

/** Samples with images whose first byte is a marker 1..255, so a pixel slot tells which image fills it. */
function materialise(specs: { kind: 'pair'; caption: string } | { kind: 'document'; items: Item[] }[]): {
  samples: SampleSpec[];
  layoutTokens: number;
  images: number;
} {
  let marker = 0;
  const nextImage = () => Buffer.from([(marker++ % 255) + 1]);
  let layoutTokens = 0;
  let images = 0;
  const samples = (specs as ({ kind: 'pair'; caption: string } | { kind: 'document'; items: Item[] })[]).map((spec, i) => {
    if (spec.kind === 'pair') {
      layoutTokens += countTokens([{ type: 'image' }, { type: 'text', text: spec.caption }]);
      images++;
      return pairSample(i % 2 ? 'laion' : 'pmd', `p${i}`, spec.caption, nextImage());
    }
    // The count the build records for a document (pipelines/engine/document-sample.ts).
    layoutTokens += countTokens(documentSegments(spec.items));
    images += spec.items.filter((it) => 'image' in it).length;
    return documentSample(
      i % 2 ? 'obelisc' : 'wikipedia',
      `d${i}`,
      spec.items.map((it) => ('image' in it ? nextImage() : it.text)),
    );
  });
  return { samples, layoutTokens, images };
}

test('properties: lengths, image slots, the image-attention rule at every position, and every token and image accounted for', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(sampleSpec, { minLength: 1, maxLength: 8 }), settings, async (specs, options) => {
      const { samples, layoutTokens, images } = materialise(specs as never);
      const { batches, plans, tally } = await packAll(samples, options);
      const { seqLen: L, maxImages: N, batchSize: B } = options;
      let realTokens = 0;
      batches.forEach((batch, k) => {
        for (let b = 0; b < B; b++) {
          const rowPlan = plans[k]!.rows[b]!;
          // No sequence over the length; attention_mask is 1 exactly on the packed tokens.
          assert.ok(rowPlan.ids.length <= L);
          const ids = [...batch.inputIds.subarray(b * L, (b + 1) * L)];
          const mask = [...batch.attentionMask.subarray(b * L, (b + 1) * L)];
          assert.deepEqual(
            mask,
            ids.map((_, l) => (l < rowPlan.ids.length ? 1 : 0)),
          );
          realTokens += rowPlan.ids.length;
          // <image> tokens in the row = its non-empty image slots, in order.
          const imageTokens = ids.filter((id) => id === IMAGE_TOKEN).length;
          const filled = Array.from({ length: N }, (_, n) => batch.pixelValues[(b * N + n) * PIXELS_PER_IMAGE]!);
          assert.equal(imageTokens, filled.filter((v) => v !== 0).length);
          assert.ok(imageTokens <= N);
          assert.deepEqual(
            filled.slice(0, imageTokens),
            rowPlan.images.map((image) => image.bytes[0]),
          );
          // Every token attends to the most recent <image> at or before it, unless a </s> lies between them (the
          // </s> itself still attends); padding attends to none.
          const attended = attendedImages(batch, b);
          for (let l = 0; l < L; l++) {
            let last = -1;
            let count = 0;
            for (let p = 0; p <= l; p++) if (ids[p] === IMAGE_TOKEN) [last, count] = [p, count + 1];
            const closed = last >= 0 && ids.slice(last, l).includes(EOS);
            const expected = l >= rowPlan.ids.length || count === 0 || closed ? -1 : count - 1;
            assert.equal(attended[l], expected, `row ${b} token ${l}`);
          }
        }
      });
      // Every input token and image is packed, truncated or dropped (windows' added <s>/</s> counted as added).
      const sources = [...tally.values()];
      assert.equal(
        sources.reduce((n, t) => n + t.inputTokens, 0),
        layoutTokens,
        'input tokens equal what the build counts',
      );
      assert.equal(
        sources.reduce((n, t) => n + t.inputImages, 0),
        images,
      );
      for (const t of sources) {
        assert.equal(pendingTokens(t), 0);
        assert.equal(t.inputImages, t.packedImages + t.droppedImages);
      }
      assert.equal(
        sources.reduce((n, t) => n + t.packedTokens, 0),
        realTokens,
      );
    }),
    { numRuns: 150 },
  );
});
