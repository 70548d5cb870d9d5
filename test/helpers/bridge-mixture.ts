import { freshState } from '../../mixer/mixture-state.ts';
import type { MixPlan } from '../../mixer/plan.ts';
import type { MixedSample, MixtureState, MixtureStream, MixtureStreamOptions } from '../../mixer/mixture-stream-types.ts';
import type { MixtureSource } from '../../trainer-bridge/bridge.ts';

export type SampleSpec = Omit<MixedSample, 'position'>;

/**
 * A stand-in for the mixer's stream with the contract's behaviour: single-rank positions 0, 1, 2, ... cycling over
 * `samples`; rank r of w takes the positions r, r + w, ...; `endless` continues past the list; resumable from state().
 */
export function listMixture(samples: SampleSpec[], options: { budgetTokens?: number; sequenceLength?: number } = {}): MixtureSource {
  const plan = {
    budget: { tokens: options.budgetTokens ?? 1_000_000, tokensPerStep: 1, steps: 1, boundBy: 'test' },
    profile: { sequenceLength: options.sequenceLength ?? 1024 },
  } as unknown as MixPlan;
  return {
    plan,
    stream(opts: MixtureStreamOptions = {}): MixtureStream {
      const rank = opts.rank ?? 0;
      const worldSize = opts.worldSize ?? 1;
      const resume = opts.resume as MixtureState | undefined;
      let position = resume?.next ?? rank;
      const state = (): MixtureState => ({ ...freshState({ plan: 'list', seed: 0, sources: [] }, rank, worldSize), next: position });
      return {
        state,
        realised: () => ({ samples: 0, tokens: 0, sources: [], badShards: [], remainder: 0, quality: { window: 8192, windows: 0, sources: [] } }),
        async *[Symbol.asyncIterator]() {
          while (opts.endless || position < samples.length) {
            const spec = samples[position % samples.length]!;
            const sample: MixedSample = { ...spec, position };
            position += worldSize;
            yield sample;
          }
        },
      };
    },
  };
}

export function pairSample(source: string, key: string, caption: string, image: Buffer, tokens = 0): SampleSpec {
  return {
    source,
    key,
    shard: `${source}-000000.tar`,
    tokens,
    images: 1,
    fields: { jpg: image, txt: Buffer.from(caption), json: Buffer.from(JSON.stringify({ key, caption, tokens })) },
  };
}

/** A document sample: `items` in order, a string for a text and a Buffer for an image (stored as `N.jpg`). */
export function documentSample(source: string, key: string, items: (string | Buffer)[], tokens = 0): SampleSpec {
  const fields: Record<string, Buffer> = {};
  const texts: (string | null)[] = [];
  const images: (string | null)[] = [];
  let n = 0;
  for (const item of items) {
    if (typeof item === 'string') {
      texts.push(item);
      images.push(null);
    } else {
      const field = `${n++}.jpg`;
      fields[field] = item;
      texts.push(null);
      images.push(field);
    }
  }
  fields.json = Buffer.from(JSON.stringify({ key, texts, images, tokens }));
  return { source, key, shard: `${source}-000000.tar`, tokens, images: n, fields };
}
