import { buildManifest, writeManifest, type Manifest } from '../shards/manifest.ts';
import { ShardWriter } from '../shards/shard-writer.ts';
import { openStorage } from '../shards/storage/open.ts';
import { countTokens, documentSegments } from '../trainer-bridge/token-layout.ts';
import { generator } from '../mixer/seeded-random.ts';
import { jpeg } from './images.ts';

export interface SyntheticDatasetOptions {
  /** A folder or an s3:// prefix. */
  location: string;
  /** Shard name prefix and `dataset.source` in the manifest. */
  source: string;
  layout: 'pair' | 'document';
  /** Samples in each shard, in order. */
  shardSamples: readonly number[];
  seed?: number;
  /** Documents: this many images each (default 1-3 at random), of this side in pixels (default 160). */
  images?: number;
  imageSide?: number;
  /** Documents: about this many words in all (default 15-370 at random). */
  words?: number;
}

const WORDS =
  'a the red blue small large old new dog cat river city mountain photo of on in with near under tree house street market bridge boat garden window morning ' +
  'evening light shadow people child woman man bicycle train station'.split(' ');

/**
 * A built dataset written straight through `shards/` (tars, indexes, manifest, wids.json) without downloads: pairs
 * with captions, or documents with paragraphs and 1-3 images, sized at random from the seed. Token counts are the real
 * layout's, as a build records them. For tests and benchmarks that need many datasets of known shape quickly.
 */
export async function writeSyntheticDataset(options: SyntheticDatasetOptions): Promise<Manifest> {
  const storage = openStorage(options.location);
  const next = generator(options.seed ?? 1, options.source.length);
  const side = options.imageSide ?? 160;
  const photo = await jpeg(side, side, { seed: options.seed ?? 1 });
  const words = (n: number) => Array.from({ length: n }, () => WORDS[Math.floor(next() * WORDS.length)]).join(' ');
  const records = [];
  let row = 0;
  for (const [k, samples] of options.shardSamples.entries()) {
    const writer = new ShardWriter({ storage, prefix: options.source, firstShard: k, maxSamples: Number.MAX_SAFE_INTEGER });
    for (let i = 0; i < samples; i++) {
      const key = String(row++).padStart(9, '0');
      if (options.layout === 'pair') {
        const caption = words(3 + Math.floor(next() * 25));
        const tokens = countTokens([{ type: 'image' }, { type: 'text', text: caption }]);
        const json = { key, caption, tokens };
        await writer.write({ key, fields: { jpg: photo, txt: Buffer.from(caption), json: Buffer.from(JSON.stringify(json)) } }, { images: 1, tokens });
      } else {
        const imageCount = options.images ?? 1 + Math.floor(next() * 3);
        const texts: (string | null)[] = [];
        const images: (string | null)[] = [];
        const fields: Record<string, Uint8Array> = {};
        for (let p = 0; p < imageCount; p++) {
          texts.push(`${words(options.words ? Math.round(options.words / imageCount) : 10 + Math.floor(next() * 120))}.`, null);
          images.push(null, `${p}.jpg`);
          fields[`${p}.jpg`] = photo;
        }
        texts.push(words(5 + Math.floor(next() * 60)));
        images.push(null);
        const tokens = countTokens(documentSegments(texts.map((t) => (t === null ? { image: true as const } : { text: t }))));
        fields.json = Buffer.from(JSON.stringify({ key, texts, images, tokens }));
        await writer.write({ key, fields }, { images: imageCount, tokens });
      }
    }
    records.push(...(await writer.close()));
  }
  const manifest = buildManifest(records, { source: options.source, layout: options.layout, synthetic: true });
  await writeManifest(storage, manifest, options.source);
  return manifest;
}
