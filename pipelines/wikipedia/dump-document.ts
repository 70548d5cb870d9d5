import type { DumpLine } from '../engine/dump/read-dump.ts';
import { extractArticle, type ArticleImage } from './extract-article.ts';
import type { RenditionTarget } from './thumbnails.ts';

/**
 * One line of the Wikimedia Enterprise HTML dump as an interleaved document in the OBELICS layout, or the reason it is
 * none. A record holds `name`, `identifier`, `url`, `date_modified`, `version.identifier`, `namespace.identifier`,
 * `main_entity.identifier` and `article_body.html` (Parsoid HTML); see ../shared/realdata/wikipedia-dump/README.md in
 * the project's shared folder for where that layout is documented.
 */
export interface WikipediaDocument {
  /** Parallel lists: at each position exactly one of texts and images is non-null. */
  texts: (string | null)[];
  images: (string | null)[];
  metadata: (ArticleImage | null)[];
  general_metadata: GeneralMetadata;
}

export interface GeneralMetadata {
  url: string | null;
  name: string;
  identifier: number | null;
  date_modified: string | null;
  revision: number | null;
  wikidata?: string;
}

export type NotADocument = { status: 'filtered' | 'malformed'; error: string };

export function dumpDocument(line: DumpLine, target: RenditionTarget): WikipediaDocument | NotADocument {
  if (line.bytes === null) return { status: 'malformed', error: `line of ${line.length} bytes is over --max-line-bytes ${line.maxLineBytes}` };
  let record: unknown;
  try {
    record = JSON.parse(line.bytes.toString('utf8'));
  } catch (err) {
    return { status: 'malformed', error: `line is not JSON (${(err as Error).message.slice(0, 120)})` };
  }
  if (typeof record !== 'object' || record === null || Array.isArray(record)) return { status: 'malformed', error: 'line is not a JSON object' };
  const r = record as Record<string, unknown>;
  const html = (r.article_body as { html?: unknown } | undefined)?.html;
  if (typeof r.article_body !== 'object' || r.article_body === null || typeof html !== 'string') {
    return { status: 'malformed', error: 'record has no article_body.html' };
  }
  if (typeof r.name !== 'string' || r.name === '') return { status: 'malformed', error: 'record has no name' };
  const namespace = (r.namespace as { identifier?: unknown } | undefined)?.identifier;
  if (namespace !== undefined && namespace !== 0) return { status: 'filtered', error: `namespace ${String(namespace)} is not the article namespace` };

  const url = typeof r.url === 'string' ? r.url : null;
  const article = extractArticle(html, { title: r.name, url: url ?? '', target });
  if (article.redirect !== undefined) return { status: 'filtered', error: `redirect to ${article.redirect}` };
  if (article.disambiguation) return { status: 'filtered', error: 'disambiguation page' };
  if (!article.hasText) return { status: 'filtered', error: 'no text' };

  const general: GeneralMetadata = {
    url,
    name: r.name,
    identifier: integer(r.identifier),
    date_modified: typeof r.date_modified === 'string' ? r.date_modified : null,
    revision: integer((r.version as { identifier?: unknown } | undefined)?.identifier),
  };
  const wikidata = (r.main_entity as { identifier?: unknown } | undefined)?.identifier;
  if (typeof wikidata === 'string') general.wikidata = wikidata;
  const document: WikipediaDocument = { texts: [], images: [], metadata: [], general_metadata: general };
  for (const item of article.items) {
    document.texts.push(item.kind === 'text' ? item.text : null);
    document.images.push(item.kind === 'image' ? item.image.src : null);
    document.metadata.push(item.kind === 'image' ? item.image : null);
  }
  return document;
}

function integer(value: unknown): number | null {
  return typeof value === 'number' && Number.isSafeInteger(value) ? value : null;
}
