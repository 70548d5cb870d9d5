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

/** `end_of_document` separates documents merged into one (see END_OF_DOCUMENT below). */
export type Segment = { type: 'text'; text: string } | { type: 'image' } | { type: 'end_of_document' };

/**
 * OBELICS marks where one web page held several documents with this text; the original trainer replaced it with the
 * end-of-sequence token and split the document there, so each part starts with `<s>` and ends with `</s>`.
 */
export const END_OF_DOCUMENT = 'END_OF_DOCUMENT_TOKEN_TO_BE_REPLACED';

/**
 * LLaMA ids of a text, without BOS. The tokenizer slows sharply on long strings (46k tokens/s on 1 MB against 242k
 * split by paragraph), and the same words come back all the time, so the text is cut into words (before each space
 * that follows a non-space, and after each newline) and each word's ids are remembered. LLaMA's SentencePiece model
 * splits on whitespace, so no token spans two such words, and only the first word gets SentencePiece's leading space:
 * the ids equal those of the whole string (a property test checks it on arbitrary strings).
 */
export function encodeText(text: string): number[] {
  if (text === '') return [];
  const ids: number[] = [];
  let first = true;
  for (const line of text.split(/(?<=\n)/)) {
    for (const word of line.split(/(?<=[^ ])(?= )/)) {
      for (const id of encodeWord(word, first)) ids.push(id);
      first = false;
    }
  }
  return ids;
}

/** Words remembered at most; past it the memory starts over (a long run meets the common words again at once). */
const MAX_REMEMBERED_WORDS = 200_000;
/** Longer "words" (base64, URLs) are rare repeats: encoded each time, not remembered. */
const MAX_REMEMBERED_LENGTH = 48;
const remembered = [new Map<string, readonly number[]>(), new Map<string, readonly number[]>()];

function encodeWord(word: string, first: boolean): readonly number[] {
  if (word.length > MAX_REMEMBERED_LENGTH) return llamaTokenizer.encode(word, false, first);
  const memory = remembered[first ? 1 : 0]!;
  let ids = memory.get(word);
  if (ids === undefined) {
    if (memory.size >= MAX_REMEMBERED_WORDS) memory.clear();
    ids = llamaTokenizer.encode(word, false, first);
    memory.set(word, ids);
  }
  return ids;
}

/**
 * `<s>`, then each segment in order (an image as `<fake><image><fake>`, or `<image><fake>` right after another image),
 * then `</s>`; an end of document in between closes one part and opens the next: `</s><s>`.
 */
export function layoutTokens(segments: readonly Segment[]): number[] {
  return layoutTokenSegments(segments.map((s) => (s.type === 'text' ? { type: 'text', ids: encodeText(s.text) } : s)));
}

/** A segment whose text is already tokenized: what the bridge packs, windows and cuts. */
export type TokenSegment = { type: 'text'; ids: readonly number[] } | { type: 'image' } | { type: 'end_of_document' };

/** `layoutTokens` over segments already tokenized (the same rules, the same ids). */
export function layoutTokenSegments(segments: readonly TokenSegment[]): number[] {
  const ids = [BOS];
  let previousWasImage = false;
  for (const segment of segments) {
    if (segment.type === 'end_of_document') {
      ids.push(EOS, BOS);
      previousWasImage = false;
    } else if (segment.type === 'image') {
      if (!previousWasImage) ids.push(FAKE_TOKEN_AROUND_IMAGE);
      ids.push(IMAGE_TOKEN, FAKE_TOKEN_AROUND_IMAGE);
      previousWasImage = true;
    } else {
      for (const id of segment.ids) ids.push(id);
      if (segment.ids.length > 0) previousWasImage = false;
    }
  }
  ids.push(EOS);
  return ids;
}

/**
 * The segments of an interleaved document (texts and images in order), with END_OF_DOCUMENT markers inside texts turned
 * into document boundaries. Boundaries that would leave an empty part (at either end, or twice in a row) are dropped.
 */
export function documentSegments(items: readonly ({ text: string } | { image: true })[]): Segment[] {
  const raw: Segment[] = [];
  for (const item of items) {
    if ('image' in item) {
      raw.push({ type: 'image' });
      continue;
    }
    item.text.split(END_OF_DOCUMENT).forEach((part, i) => {
      if (i > 0) raw.push({ type: 'end_of_document' });
      const text = part.trim();
      if (text !== '') raw.push({ type: 'text', text });
    });
  }
  const segments: Segment[] = [];
  for (const segment of raw) {
    const last = segments[segments.length - 1];
    if (segment.type === 'end_of_document' && (last === undefined || last.type === 'end_of_document')) continue;
    segments.push(segment);
  }
  if (segments[segments.length - 1]?.type === 'end_of_document') segments.pop();
  return segments;
}

export function countTokens(segments: readonly Segment[]): number {
  return layoutTokens(segments).length;
}
