import { M4Error } from '../core/errors.ts';
import type { MixedSample } from '../mixer/mixture-stream-types.ts';
import { imagesOf, layoutAtoms, sampleParts, type Atom, type ImageRef } from './sample-parts.ts';
import { tallyOf, type Tally } from './tally.ts';

/** Parts and windows shorter than this many tokens are dropped, as the original trainer did. */
export const MIN_UNIT_TOKENS = 5;
/**
 * A window that would end with an image in its last quarter ends before it instead (when it keeps an earlier image),
 * so that image opens the next window with text after it to attend to it. The original trainer likewise favoured
 * windows starting up to 3/4 of a sequence before an image.
 */
export const IMAGE_TAIL_FRACTION = 0.25;
/** `<s>`, an image's three placeholders and `</s>`. */
const MIN_WINDOW_SEQ_LEN = 5;

export interface UnitOptions {
  seqLen: number;
  maxImages: number;
}

/** What the packer places whole in one sequence: `<s>` ... `</s>` with its images in order. */
export interface Unit {
  source: string;
  key: string;
  ids: number[];
  images: ImageRef[];
}

/**
 * The units of one sample, in order: a part that fits the sequence is one unit; a longer pair is cut at its end; a
 * longer document part is cut into windows (see `cutWindows`). Images over `maxImages` in a unit are removed with their
 * placeholder tokens. Everything read, added, truncated and dropped is counted in `tally`.
 */
export function sampleUnits(sample: MixedSample, options: UnitOptions, tally: Tally): Unit[] {
  const t = tallyOf(tally, sample.source);
  t.samples++;
  const units: Unit[] = [];
  const keep = (atoms: Atom[]) => {
    let kept = atoms;
    const images = imagesOf(atoms);
    if (images.length > options.maxImages) {
      let seen = 0;
      kept = atoms.filter((a) => typeof a === 'number' || seen++ < options.maxImages);
      t.droppedImages += images.length - options.maxImages;
      t.droppedTokens += layoutAtoms(atoms).length - layoutAtoms(kept).length;
    }
    const ids = layoutAtoms(kept);
    const keptImages = imagesOf(kept);
    if (ids.length < MIN_UNIT_TOKENS) {
      t.droppedUnits++;
      t.droppedTokens += ids.length;
      t.droppedImages += keptImages.length;
      return;
    }
    units.push({ source: sample.source, key: sample.key, ids, images: keptImages });
  };

  for (const part of sampleParts(sample)) {
    const length = layoutAtoms(part.atoms).length;
    t.inputTokens += length;
    t.inputImages += imagesOf(part.atoms).length;
    if (length <= options.seqLen) {
      keep(part.atoms);
    } else if (part.kind === 'pair') {
      // A pair is never split: its caption is cut so that `<s>`, the image, the caption's start and `</s>` fill the row.
      const kept = part.atoms.slice(0, part.atoms.length - (length - options.seqLen));
      t.truncatedTokens += length - options.seqLen;
      keep(kept);
    } else {
      const windows = cutWindows(part.atoms, options.seqLen);
      t.windows += windows.length;
      t.addedTokens += windows.reduce((n, w) => n + layoutAtoms(w).length, 0) - length;
      for (const window of windows) {
        if (imagesOf(window).length > 0) {
          keep(window);
          continue;
        }
        // A text-only window trains nothing of the cross-attention; the original trainer skipped them too.
        t.droppedUnits++;
        t.droppedTokens += layoutAtoms(window).length;
      }
    }
  }
  return units;
}

/**
 * Cuts a part longer than the sequence into consecutive windows that do not overlap, each at most `seqLen` tokens once
 * laid out (`<s>` + content + `</s>`), never inside an image's placeholders. A window is filled up to the sequence
 * length, except that it ends before an image starting in its last quarter when it already holds an earlier image, so
 * that image opens the next window. Every atom lands in exactly one window.
 */
export function cutWindows(atoms: readonly Atom[], seqLen: number): Atom[][] {
  const capacity = seqLen - 2;
  const isImage = (i: number) => typeof atoms[i] !== 'number';
  const windows: Atom[][] = [];
  let start = 0;
  while (start < atoms.length) {
    let used = 0;
    let end = start;
    const offsets: number[] = [];
    while (end < atoms.length) {
      const cost = isImage(end) ? (end > start && isImage(end - 1) ? 2 : 3) : 1;
      if (used + cost > capacity) break;
      offsets.push(used);
      used += cost;
      end++;
    }
    if (end < atoms.length) {
      const tailStart = Math.floor(capacity * (1 - IMAGE_TAIL_FRACTION));
      let firstImage = -1;
      for (let i = start; i < end; i++)
        if (isImage(i)) {
          firstImage = i;
          break;
        }
      for (let i = end - 1; i > firstImage && firstImage >= 0; i--) {
        if (offsets[i - start]! < tailStart) break;
        if (isImage(i) && !isImage(i - 1)) {
          end = i;
          break;
        }
      }
    }
    if (end === start) throw new M4Error('E_USAGE', 'bridge', `a sequence of ${seqLen} tokens cannot hold a window (at least ${MIN_WINDOW_SEQ_LEN})`);
    windows.push(atoms.slice(start, end));
    start = end;
  }
  return windows;
}
