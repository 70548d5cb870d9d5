import { readFile, readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { M4Error } from '../core/errors.ts';

/**
 * A mix profile: the model card's data mixture and training table, as data (`mixer/profiles/*.json`). The mixer reads
 * its sources; the trainer reads `sequenceLength`, `tokensPerStep`, `training` and `model` from the same file.
 */
export interface MixProfile {
  format: 'm4data-mix-profile';
  version: 1;
  name: string;
  /** One line, shown by `m4data mix --list-profiles`. */
  summary: string;
  /** Where the numbers come from. */
  card: string;
  sources: ProfileSource[];
  sequenceLength: number;
  /** Effective batch size in tokens (card: 3.67M for 80B, 1.31M for 9B). */
  tokensPerStep: number;
  maxSteps: number;
  training: TrainingTable;
  model: ModelTable;
}

export interface ProfileSource {
  /** The `--source` name of `m4data build` (pmd, laion, obelisc, wikipedia) or a user's own name. */
  name: string;
  layout: 'pair' | 'document';
  /** The card's epochs over the source (fractions allowed). */
  epochs: number;
  /** The card's share of training tokens, a fraction of 1. */
  share: number;
  /** Tokens and images the card states for the source, when it states them. */
  cardTokens?: number;
  cardImages?: number;
}

export interface TrainingTable {
  learningRate: { initial: number; final: number; warmupSteps: number; decay: 'linear' };
  weightDecay: number;
  adamBetas: [number, number];
  gradientClipping: number;
  zLossWeight: number;
  precision: string;
  gradientCheckpointing: boolean;
}

export interface ModelTable {
  languageModel: string;
  visionModel: string;
  perceiver: { layers: number; latents: number; heads: number; headDim: number };
  crossLayerInterval: number;
}

/** The shortest sequence a training window can use: `<s>`, an image's three placeholders, some text and `</s>`. */
export const MIN_SEQUENCE_LENGTH = 16;

const PROFILE_DIR = join(dirname(fileURLToPath(import.meta.url)), 'profiles');
/** Shares are printed with two decimals in percent; allow that rounding and no more. */
const SHARE_TOLERANCE = 1e-3;

/** The built-in profiles, by name, with their summaries. */
export async function listProfiles(): Promise<{ name: string; summary: string }[]> {
  const names = (await readdir(PROFILE_DIR)).filter((f) => f.endsWith('.json')).sort();
  const out: { name: string; summary: string }[] = [];
  for (const file of names) {
    const profile = await loadProfile(join(PROFILE_DIR, file));
    out.push({ name: profile.name, summary: profile.summary });
  }
  return out;
}

/** A built-in profile by name (`atum-9b`), or a user's JSON file by path; schema-checked either way. */
export async function loadProfile(nameOrPath: string): Promise<MixProfile> {
  const isPath = nameOrPath.endsWith('.json') || nameOrPath.includes('/');
  const path = isPath ? nameOrPath : join(PROFILE_DIR, `${nameOrPath}.json`);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (!isPath && (err as NodeJS.ErrnoException).code === 'ENOENT') {
      const known = (await readdir(PROFILE_DIR)).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5));
      throw new M4Error('E_USAGE', 'mixer', `no profile named ${nameOrPath} (built in: ${known.sort().join(', ')}; or give a path to a .json file)`);
    }
    throw new M4Error('E_USAGE', 'mixer', `cannot read profile ${path}: ${(err as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new M4Error('E_USAGE', 'mixer', `profile ${path} is not valid JSON: ${(err as Error).message}`);
  }
  return checkProfile(value, path);
}

type Shape = 'string' | 'number' | 'boolean' | 'object' | 'array' | { enum: readonly unknown[] };
type Schema = Record<string, { shape: Shape; optional?: boolean; check?: (v: never) => string | undefined; fields?: Schema; items?: Schema }>;

const nonNegative = (v: number) => (Number.isFinite(v) && v >= 0 ? undefined : 'a number of 0 or more');
const positiveInteger = (v: number) => (Number.isSafeInteger(v) && v > 0 ? undefined : 'a whole number over 0');
const fraction = (v: number) => (Number.isFinite(v) && v >= 0 && v <= 1 ? undefined : 'a fraction from 0 to 1');

const SCHEMA: Schema = {
  format: { shape: { enum: ['m4data-mix-profile'] } },
  version: { shape: { enum: [1] } },
  name: { shape: 'string', check: (v: string) => (/^[A-Za-z0-9._-]+$/.test(v) ? undefined : 'letters, digits, ".", "_" or "-"') },
  summary: { shape: 'string' },
  card: { shape: 'string' },
  sources: {
    shape: 'array',
    items: {
      name: { shape: 'string', check: (v: string) => (/^[a-z0-9_-]+$/.test(v) ? undefined : 'lower-case letters, digits, "_" or "-"') },
      layout: { shape: { enum: ['pair', 'document'] } },
      epochs: { shape: 'number', check: nonNegative },
      share: { shape: 'number', check: fraction },
      cardTokens: { shape: 'number', optional: true, check: nonNegative },
      cardImages: { shape: 'number', optional: true, check: nonNegative },
    },
  },
  sequenceLength: {
    shape: 'number',
    check: (v: number) => (Number.isSafeInteger(v) && v >= MIN_SEQUENCE_LENGTH ? undefined : `a whole number of at least ${MIN_SEQUENCE_LENGTH}`),
  },
  tokensPerStep: { shape: 'number', check: positiveInteger },
  maxSteps: { shape: 'number', check: positiveInteger },
  training: {
    shape: 'object',
    fields: {
      learningRate: {
        shape: 'object',
        fields: {
          initial: { shape: 'number', check: nonNegative },
          final: { shape: 'number', check: nonNegative },
          warmupSteps: { shape: 'number', check: (v: number) => (Number.isSafeInteger(v) && v >= 0 ? undefined : 'a whole number of 0 or more') },
          decay: { shape: { enum: ['linear'] } },
        },
      },
      weightDecay: { shape: 'number', check: nonNegative },
      adamBetas: {
        shape: 'array',
        check: (v: unknown[]) => (v.length === 2 && v.every((b) => typeof b === 'number' && b >= 0 && b < 1) ? undefined : 'two numbers in [0, 1)'),
      },
      gradientClipping: { shape: 'number', check: nonNegative },
      zLossWeight: { shape: 'number', check: nonNegative },
      precision: { shape: 'string' },
      gradientCheckpointing: { shape: 'boolean' },
    },
  },
  model: {
    shape: 'object',
    fields: {
      languageModel: { shape: 'string' },
      visionModel: { shape: 'string' },
      perceiver: {
        shape: 'object',
        fields: {
          layers: { shape: 'number', check: positiveInteger },
          latents: { shape: 'number', check: positiveInteger },
          heads: { shape: 'number', check: positiveInteger },
          headDim: { shape: 'number', check: positiveInteger },
        },
      },
      crossLayerInterval: { shape: 'number', check: positiveInteger },
    },
  },
};

/** Checks a parsed profile against the schema; every refusal names the field (`sources[2].epochs`). */
export function checkProfile(value: unknown, where = 'profile'): MixProfile {
  const fail = (field: string, problem: string): never => {
    throw new M4Error('E_USAGE', 'mixer', `${where}: field ${field} ${problem}`, { field });
  };
  checkObject(value, SCHEMA, '', fail);
  const profile = value as MixProfile;
  if (profile.sources.length === 0) fail('sources', 'must name at least one source');
  const seen = new Set<string>();
  profile.sources.forEach((s, i) => {
    if (seen.has(s.name)) fail(`sources[${i}].name`, `repeats ${s.name}`);
    seen.add(s.name);
  });
  if (profile.training.learningRate.warmupSteps > profile.maxSteps)
    fail('training.learningRate.warmupSteps', `must not exceed maxSteps ${profile.maxSteps} (found ${profile.training.learningRate.warmupSteps})`);
  const sum = profile.sources.reduce((acc, s) => acc + s.share, 0);
  if (Math.abs(sum - 1) > SHARE_TOLERANCE) fail('sources[].share', `must sum to 1 (they sum to ${sum.toPrecision(6)})`);
  return profile;
}

function checkObject(value: unknown, schema: Schema, path: string, fail: (field: string, problem: string) => never): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(path || '(root)', 'must be an object');
  const obj = value as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    // Own keys only: `toString`, `constructor` or `__proto__` are not fields, whatever the prototype has.
    if (!Object.hasOwn(schema, key)) fail(join2(path, key), `is unknown (known: ${Object.keys(schema).join(', ')})`);
  }
  for (const [key, spec] of Object.entries(schema)) {
    const field = join2(path, key);
    const v = obj[key];
    if (v === undefined) {
      if (!spec.optional) fail(field, 'is missing');
      continue;
    }
    const shape = spec.shape;
    if (typeof shape === 'object') {
      if (!shape.enum.includes(v)) fail(field, `must be one of ${shape.enum.map((e) => JSON.stringify(e)).join(', ')} (found ${JSON.stringify(v)})`);
    } else if (shape === 'array' ? !Array.isArray(v) : shape === 'object' ? typeof v !== 'object' || v === null || Array.isArray(v) : typeof v !== shape) {
      fail(field, `must be ${shape === 'array' || shape === 'object' ? 'an' : 'a'} ${shape} (found ${JSON.stringify(v)})`);
    }
    const problem = spec.check?.(v as never);
    if (problem) fail(field, `must be ${problem} (found ${JSON.stringify(v)})`);
    if (spec.fields) checkObject(v, spec.fields, field, fail);
    if (spec.items) (v as unknown[]).forEach((item, i) => checkObject(item, spec.items!, `${field}[${i}]`, fail));
  }
}

function join2(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}
