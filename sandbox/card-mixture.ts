import { buildManifest, writeManifest, type ShardRecord } from '../shards/manifest.ts';
import { writeShardIndex, type IndexEntry } from '../shards/shard-index.ts';
import { openStorage } from '../shards/storage/open.ts';
import { generator } from '../mixer/seeded-random.ts';

/**
 * The card-like mixture of issue 14, as shard indexes without tars: the sizes a schedule sees. PMD 470k pairs in 471
 * shards, LAION 90.6k in 91, OBELISC 246 documents in 3 shards (median 904, largest 13k tokens), Wikipedia 2,843
 * articles in 29 shards (median 1,450, largest 30k tokens). Pairs are an image (256 px JPEG, 12-30 kB) and a caption
 * of 8-90 layout tokens (median 27); document tokens are log-normal with the median above and a spread that puts the
 * largest of that many samples near the stated maximum (which one sample has exactly); a document carries an image
 * per 1,500 tokens or so (1-30). With these counts, atum-9b's epochs give about its shares.
 */
export interface CardLikeSource {
  name: string;
  layout: 'pair' | 'document';
  samples: number;
  shards: number;
  /** Documents: median and largest tokens, and the log-normal spread. */
  medianTokens?: number;
  maxTokens?: number;
  sigma?: number;
}

export const CARD_LIKE: readonly CardLikeSource[] = [
  { name: 'pmd', layout: 'pair', samples: 470_000, shards: 471 },
  { name: 'laion', layout: 'pair', samples: 90_600, shards: 91 },
  { name: 'obelisc', layout: 'document', samples: 246, shards: 3, medianTokens: 904, maxTokens: 13_000, sigma: 1.0 },
  { name: 'wikipedia', layout: 'document', samples: 2_843, shards: 29, medianTokens: 1_450, maxTokens: 30_000, sigma: 0.92 },
];

export interface CardLikeShard {
  record: ShardRecord;
  entries: IndexEntry[];
}

const IMAGE_BYTES = [12_000, 30_000] as const;
const TAR_OVERHEAD = 1536; // three ustar headers and padding

/** The shards of one card-like source: index entries with tar offsets and sizes, as a build would record them. */
export function cardLikeShards(source: CardLikeSource, seed = 1): CardLikeShard[] {
  const next = generator(seed, source.samples, source.shards);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
  const image = () => IMAGE_BYTES[0] + Math.floor(next() * (IMAGE_BYTES[1] - IMAGE_BYTES[0]));
  const largestAt = Math.floor(next() * source.samples);
  const shards: CardLikeShard[] = [];
  let row = 0;
  for (let k = 0; k < source.shards; k++) {
    const count = Math.floor(((k + 1) * source.samples) / source.shards) - Math.floor((k * source.samples) / source.shards);
    const entries: IndexEntry[] = [];
    let offset = 0;
    for (let i = 0; i < count; i++, row++) {
      let tokens: number;
      let images: number;
      let size: number;
      if (source.layout === 'pair') {
        tokens = Math.min(90, Math.max(8, Math.round(27 * Math.exp(0.45 * gauss()))));
        images = 1;
        size = image() + tokens * 5 + TAR_OVERHEAD;
      } else {
        const drawn = Math.round(source.medianTokens! * Math.exp(source.sigma! * gauss()));
        tokens = row === largestAt ? source.maxTokens! : Math.min(source.maxTokens!, Math.max(30, drawn));
        images = Math.min(30, 1 + Math.floor(tokens / 1500 + next()));
        size = tokens * 4 + TAR_OVERHEAD;
        for (let m = 0; m < images; m++) size += image() + 512;
      }
      size = Math.ceil(size / 512) * 512;
      entries.push({ key: String(row).padStart(9, '0'), offset, size, images, tokens });
      offset += size;
    }
    const record: ShardRecord = {
      shard: `${source.name}-${String(k).padStart(6, '0')}.tar`,
      samples: count,
      images: entries.reduce((a, e) => a + e.images, 0),
      tokens: entries.reduce((a, e) => a + e.tokens, 0),
      bytes: offset + 1024,
      sha256: '0'.repeat(64),
    };
    shards.push({ record, entries });
  }
  return shards;
}

/** The source as an in-memory indexed dataset (what the schedule reads). */
export function cardLikeDataset(source: CardLikeSource, seed = 1): { shards: ShardRecord[]; entries: (shard: number) => Promise<IndexEntry[]> } {
  const shards = cardLikeShards(source, seed);
  return { shards: shards.map((s) => s.record), entries: async (shard) => shards[shard]!.entries };
}

/** Writes the source's manifest and indexes (no tars) under `location`: enough to plan it and to schedule it. */
export async function writeCardLikeIndexes(location: string, source: CardLikeSource, seed = 1): Promise<void> {
  const storage = openStorage(location);
  const shards = cardLikeShards(source, seed);
  for (const { record, entries } of shards) await writeShardIndex(storage, record.shard, record, entries);
  await writeManifest(
    storage,
    buildManifest(
      shards.map((s) => s.record),
      { source: source.name, cardLike: true },
    ),
    source.name,
  );
}
