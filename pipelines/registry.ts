import { M4Error } from '../core/errors.ts';
import type { SourceAdapter } from './engine/source-adapter.ts';
import { laion } from './laion/source.ts';
import { obelisc } from './obelisc/source.ts';
import { pmd } from './pmd/source.ts';
import { wikipedia } from './wikipedia/source.ts';

/** Every source `m4data build --source NAME` knows. */
export const SOURCES: readonly SourceAdapter[] = [obelisc as SourceAdapter, pmd as SourceAdapter, laion as SourceAdapter, wikipedia as SourceAdapter];

export function findSource(name: string): SourceAdapter {
  const wanted = name.toLowerCase();
  const source = SOURCES.find((s) => s.name === wanted || s.aliases.includes(wanted));
  if (!source) {
    throw new M4Error('E_USAGE', 'build', `unknown source ${JSON.stringify(name)}; known: ${SOURCES.map((s) => s.name).join(', ')}`);
  }
  return source;
}
