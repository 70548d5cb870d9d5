import { dirname, resolve } from 'node:path';
import { M4Error } from '../core/errors.ts';
import { readJson } from '../shards/storage/json.ts';
import { checkLocalOutput } from '../shards/storage/local-output.ts';
import { isRemote } from '../shards/storage/location.ts';
import { openStorage } from '../shards/storage/open.ts';
import type { Storage } from '../shards/storage/storage.ts';
import type { MixPlan } from './plan.ts';

export const PLAN_NAME = 'plan.json';
export const PLAN_SVG_NAME = 'plan.svg';
export const REALISED_NAME = 'realised.json';
/** Shards a materialised mixture is written as: `mix-000000.tar` and their indexes. */
export const MIX_SHARD_PREFIX = 'mix';

/** Every file a mixture's folder may hold: the plan, its chart, and what materialising writes. */
const OWN_FILE = /^(plan\.json|plan\.svg|realised\.json|manifest\.json|wids\.json|mix-\d{6,}\.tar|mix-\d{6,}\.idx\.json)$/;

/**
 * Checks a mixture's output location before anything is written: a place files can be written (a local folder on a
 * real, writable file system, or S3), none of the mixture's sources (a mix never writes into a dataset it reads), and
 * holding nothing but this same mixture's own files. A folder holding another plan, a built dataset or files of the
 * user's is refused, so nothing is overwritten.
 */
export async function checkMixOutput(location: string, plan: MixPlan): Promise<Storage> {
  if (/^https?:\/\//i.test(location))
    throw new M4Error('E_USAGE', 'mixer', `the mixture's output ${location} is read-only (http): give a folder or an s3:// prefix`);
  if (!isRemote(location)) await checkLocalOutput(openStorage(location).root, 'the mixture output');
  for (const source of plan.sources) {
    if (source.location !== undefined && overlaps(place(location), datasetPlace(source.location))) {
      throw new M4Error(
        'E_USAGE',
        'mixer',
        `the mixture's output ${location} is, or lies inside, source ${source.name}'s dataset (${source.location}): a mix never writes into a dataset it ` +
          `reads; give another output`,
        { source: source.name },
      );
    }
  }
  const storage = openStorage(location);
  const strangers: string[] = [];
  for await (const { key } of storage.list()) if (!OWN_FILE.test(key)) strangers.push(key);
  if (strangers.length > 0) {
    const named = `${strangers.slice(0, 3).join(', ')}${strangers.length > 3 ? ` and ${strangers.length - 3} more` : ''}`;
    throw new M4Error('E_USAGE', 'mixer', `${location} holds files that are not this mixture's (${named}): give a new or empty output (nothing was changed)`, {
      location,
    });
  }
  const planned = await storage.stat(PLAN_NAME);
  if (planned) {
    if (JSON.stringify(await readJson(storage, PLAN_NAME)) !== JSON.stringify(plan)) {
      throw new M4Error('E_USAGE', 'mixer', `${storage.urlOf(PLAN_NAME)} holds another mixture's plan; give another output (nothing was changed)`, {
        location,
      });
    }
  } else {
    const any = await firstKey(storage);
    if (any !== undefined)
      throw new M4Error(
        'E_USAGE',
        'mixer',
        `${location} holds ${any} but no plan: it is not this mixture's; give a new or empty output (nothing was changed)`,
        { location },
      );
  }
  return storage;
}

async function firstKey(storage: Storage): Promise<string | undefined> {
  for await (const { key } of storage.list()) return key;
  return undefined;
}

/** A location as a comparable place: an absolute local path, or an `s3://bucket/prefix` without trailing slashes. */
function place(location: string): string {
  if (isRemote(location)) return location.replace(/\/+$/, '');
  return openStorage(location).root;
}

/** A dataset given as its folder, or as the URL or path of its manifest. */
function datasetPlace(location: string): string {
  if (!/\.json$/i.test(location)) return place(location);
  return isRemote(location) ? location.slice(0, location.lastIndexOf('/')) : dirname(resolve(location));
}

function overlaps(a: string, b: string): boolean {
  return a === b || a.startsWith(`${b}/`) || b.startsWith(`${a}/`);
}
