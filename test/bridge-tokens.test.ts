import { test } from 'node:test';
import assert from 'node:assert/strict';
import llamaTokenizer from 'llama-tokenizer-js';
import fc from 'fast-check';
import {
  BOS,
  countTokens,
  documentSegments,
  encodeText,
  END_OF_DOCUMENT,
  EOS,
  FAKE_TOKEN_AROUND_IMAGE,
  IMAGE_TOKEN,
  layoutTokens,
} from '../trainer-bridge/token-layout.ts';
import { layoutAtoms, sampleParts } from '../trainer-bridge/sample-parts.ts';
import { documentSample, pairSample } from './helpers/bridge-mixture.ts';
import type { MixedSample } from '../mixer/mixture-stream-types.ts';

test('LLaMA ids: "Hello world" is 15043 3186; BOS 1, EOS 2, the two added image tokens after the 32,000', () => {
  assert.deepEqual(encodeText('Hello world'), [15043, 3186]);
  assert.deepEqual([BOS, EOS, FAKE_TOKEN_AROUND_IMAGE, IMAGE_TOKEN], [1, 2, 32000, 32001]);
  assert.deepEqual(layoutTokens([{ type: 'image' }, { type: 'text', text: 'Hello world' }]), [1, 32000, 32001, 32000, 15043, 3186, 2]);
});

test('a long text tokenized paragraph by paragraph gives the ids of the whole string', () => {
  const text = `${Array.from({ length: 30 }, (_, i) => `Paragraph ${i}: the river's light, über alles — ${'word '.repeat(i % 7)}end.\n\n`).join('')}Last line`;
  assert.deepEqual(encodeText(text), llamaTokenizer.encode(text, false));
});

test('word by word, remembered or not, the ids are those of the whole string, for any text', () => {
  // Spaces, tabs, newlines, punctuation, digits, accents, CJK and astral characters: where word boundaries are tricky.
  const alphabet = [...'aeiou tnrsl  \t\n.,;:!?-\'"()[]0123456789ABXYZéüßñ漢字😀/_=+*&%$#@~<>|'];
  const text = fc.array(fc.constantFrom(...alphabet), { minLength: 1, maxLength: 60 }).map((chars) => chars.join(''));
  fc.assert(
    fc.property(text, (t) => {
      const whole = llamaTokenizer.encode(t, false);
      assert.deepEqual(encodeText(t), whole, 'first time');
      assert.deepEqual(encodeText(t), whole, 'remembered');
    }),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(fc.string({ unit: 'grapheme', maxLength: 40 }), (t) => assert.deepEqual(encodeText(t), t === '' ? [] : llamaTokenizer.encode(t, false))),
    { numRuns: 1000 },
  );
});

test("the bridge's parts count what the build counts: pairs, documents, END_OF_DOCUMENT parts", () => {
  const at = (spec: Omit<MixedSample, 'position'>): MixedSample => ({ ...spec, position: 0 });
  const pair = sampleParts(at(pairSample('laion', 'p', ' a caption with  spaces ', Buffer.from([1]))));
  assert.equal(layoutAtoms(pair[0]!.atoms).length, countTokens([{ type: 'image' }, { type: 'text', text: ' a caption with  spaces ' }]));
  const texts = [`First story. ${END_OF_DOCUMENT} Second story.`, null, '  ', 'After the image.'];
  const doc = sampleParts(at(documentSample('obelisc', 'd', [texts[0]!, Buffer.from([2]), texts[2]!, texts[3]!])));
  assert.equal(doc.length, 2, 'END_OF_DOCUMENT splits the page into two parts');
  const first = layoutAtoms(doc[0]!.atoms);
  assert.deepEqual([first[0], first.at(-1)], [BOS, EOS]);
  const whole = countTokens(documentSegments(texts.map((t) => (t === null ? { image: true as const } : { text: t }))));
  assert.equal(
    doc.reduce((n, p) => n + layoutAtoms(p.atoms).length, 0),
    whole,
  );
});
