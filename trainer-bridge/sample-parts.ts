import { M4Error } from '../core/errors.ts';
import type { MixedSample } from '../mixer/mixture-stream-types.ts';
import { documentSegments, encodeText, layoutTokenSegments, type TokenSegment } from './token-layout.ts';

/** One image of a sample: its field (`jpg`, `0.jpg`) and bytes, with where it came from for error messages. */
export interface ImageRef {
  field: string;
  bytes: Buffer;
  key: string;
  shard: string;
}

/** Tokenized text, or an image. */
export type Atom = number | ImageRef;

/**
 * A piece of a sample that starts with `<s>` and ends with `</s>` in the layout: a pair, or one document of a web page
 * (OBELICS's END_OF_DOCUMENT marker splits a page into several). The packer never puts two parts' tokens under one `<s>`.
 */
export interface SamplePart {
  kind: 'pair' | 'document';
  source: string;
  key: string;
  /** Text token ids and images in order, without `<s>`, `</s>` or image placeholders (the layout adds those). */
  atoms: Atom[];
}

const IMAGE_FIELDS = ['jpg', 'jpeg', 'png', 'webp'];

/**
 * The parts of a mixture sample, read from its shard fields: a pair (`jpg`/`png`/`webp` + `json` with `caption`, or
 * `txt`) or a document (`json` with parallel `texts` / `images`, each image entry naming its field, e.g. `0.jpg`).
 */
export function sampleParts(sample: MixedSample): SamplePart[] {
  const fail = (problem: string): never => {
    throw new M4Error('E_INPUT', 'bridge', `${sample.shard}: sample ${sample.key} (${sample.source}): ${problem}`, {
      shard: sample.shard,
      key: sample.key,
      source: sample.source,
    });
  };
  const image = (field: string): ImageRef => {
    const bytes = sample.fields[field];
    if (!bytes) fail(`names image field ${field}, which the sample does not have`);
    return { field, bytes: bytes!, key: sample.key, shard: sample.shard };
  };
  let json: Record<string, unknown> = {};
  if (sample.fields.json) {
    try {
      json = JSON.parse(sample.fields.json.toString('utf8')) as Record<string, unknown>;
    } catch (err) {
      fail(`json field is not valid JSON: ${(err as Error).message}`);
    }
  }

  if (Array.isArray(json.texts) || Array.isArray(json.images)) {
    const texts = json.texts as unknown[];
    const images = json.images as unknown[];
    if (!Array.isArray(texts) || !Array.isArray(images) || texts.length !== images.length) fail('json texts and images are not parallel lists');
    const items: ({ text: string } | { image: true })[] = [];
    const refs: ImageRef[] = [];
    texts.forEach((text, i) => {
      if (typeof text === 'string') items.push({ text });
      else if (typeof images[i] === 'string') {
        items.push({ image: true });
        refs.push(image(images[i] as string));
      } else fail(`position ${i} has neither a text nor an image field`);
    });
    const parts: SamplePart[] = [];
    let atoms: Atom[] = [];
    let nextImage = 0;
    for (const segment of documentSegments(items)) {
      if (segment.type === 'end_of_document') {
        parts.push({ kind: 'document', source: sample.source, key: sample.key, atoms });
        atoms = [];
      } else if (segment.type === 'image') atoms.push(refs[nextImage++]!);
      else for (const id of encodeText(segment.text)) atoms.push(id);
    }
    parts.push({ kind: 'document', source: sample.source, key: sample.key, atoms });
    return parts;
  }

  const caption = typeof json.caption === 'string' ? json.caption : sample.fields.txt?.toString('utf8');
  if (caption === undefined) fail('has neither a document json (texts/images) nor a caption (json caption or txt)');
  const field = IMAGE_FIELDS.find((f) => sample.fields[f] !== undefined);
  if (field === undefined) fail(`pair has no image field (${IMAGE_FIELDS.join(', ')})`);
  // The build counts a pair as [image, caption] (pipelines/engine/pair-sample.ts): the same order here.
  return [{ kind: 'pair', source: sample.source, key: sample.key, atoms: [image(field!), ...encodeText(caption!)] }];
}

/** The ids of atoms laid out as one sequence: `<s>`, texts and image placeholders, `</s>`. */
export function layoutAtoms(atoms: readonly Atom[]): number[] {
  const segments: TokenSegment[] = [];
  let run: number[] = [];
  for (const atom of atoms) {
    if (typeof atom === 'number') run.push(atom);
    else {
      if (run.length > 0) segments.push({ type: 'text', ids: run });
      run = [];
      segments.push({ type: 'image' });
    }
  }
  if (run.length > 0) segments.push({ type: 'text', ids: run });
  return layoutTokenSegments(segments);
}

export function imagesOf(atoms: readonly Atom[]): ImageRef[] {
  return atoms.filter((a): a is ImageRef => typeof a !== 'number');
}
