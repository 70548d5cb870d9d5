import llamaTokenizer from 'llama-tokenizer-js';

/**
 * The token layout of one sample, as IDEFICS's processor builds it (transformers, processing_idefics.py) and as the
 * trainer bridge packs it. The build counts tokens with these same functions, so manifests count what training sees.
 */
export const BOS = 1;
export const EOS = 2;
/** Added tokens after LLaMA's 32,000 ids, in IDEFICS's order. */
export const FAKE_TOKEN_AROUND_IMAGE = 32000;
export const IMAGE_TOKEN = 32001;
export const VOCAB_SIZE = 32002;

export type Segment = { type: 'text'; text: string } | { type: 'image' };

/**
 * LLaMA ids of a text, without BOS. The tokenizer slows sharply on long strings (46k tokens/s on 1 MB against 242k
 * split by paragraph), so the text is cut after each newline: LLaMA has no token spanning a newline, and only the first
 * piece gets SentencePiece's leading space, so the ids equal those of the whole string.
 */
export function encodeText(text: string): number[] {
  if (text === '') return [];
  const pieces = text.split(/(?<=\n)/);
  const ids: number[] = [];
  pieces.forEach((piece, i) => {
    for (const id of llamaTokenizer.encode(piece, false, i === 0)) ids.push(id);
  });
  return ids;
}

/** `<s>`, then each segment in order (an image as `<fake><image><fake>`, or `<image><fake>` right after another image), then `</s>`. */
export function layoutTokens(segments: readonly Segment[]): number[] {
  const ids = [BOS];
  let previousWasImage = false;
  for (const segment of segments) {
    if (segment.type === 'image') {
      if (!previousWasImage) ids.push(FAKE_TOKEN_AROUND_IMAGE);
      ids.push(IMAGE_TOKEN, FAKE_TOKEN_AROUND_IMAGE);
      previousWasImage = true;
    } else {
      const text = encodeText(segment.text);
      for (const id of text) ids.push(id);
      if (text.length > 0) previousWasImage = false;
    }
  }
  ids.push(EOS);
  return ids;
}

export function countTokens(segments: readonly Segment[]): number {
  return layoutTokens(segments).length;
}
