import { walkHtml, type HtmlHandler } from './html-walker.ts';
import { fileUrls, type RenditionTarget } from './thumbnails.ts';

/**
 * The interleaved document of one article's Parsoid HTML: texts and images in reading order, following the OBELICS
 * extraction (huggingface/OBELICS, obelics/processors: dom_tree_simplificator.py, pre_extraction_simplificator.py)
 * where it fits Wikipedia, and Wikipedia's own markup where OBELICS's web-page heuristics do not (README,
 * "Extraction rules"). One pass over htmlparser2's tokens, no DOM, no recursion, linear in the HTML's length.
 */

/** An image of the article, with what OBELICS keeps of an image and what Wikipedia adds. */
export interface ArticleImage {
  /** The article's URL. */
  document_url: string;
  /** The `src` as the HTML has it. */
  unformatted_src: string;
  /** The rendition to download (https, upload.wikimedia.org). */
  src: string;
  /** The original file. */
  original_url: string;
  /** The file's description page. */
  file_page: string | null;
  alt_text?: string;
  caption?: string;
  /** Size it is shown at in the article. */
  rendered_width: number | null;
  rendered_height: number | null;
  /** Size of the original file (`data-file-width`, `data-file-height`); a drawing (SVG) renders at any size. */
  original_width: number;
  original_height: number;
  scalable: boolean;
}

export type ArticleItem = { kind: 'text'; text: string } | { kind: 'image'; image: ArticleImage };

export interface ExtractedArticle {
  items: ArticleItem[];
  /** The target of a redirect page (`<link rel="mw:PageProp/redirect">`), as a title. */
  redirect: string | undefined;
  /** A disambiguation page (`<meta property="mw:PageProp/disambiguation">`). */
  disambiguation: boolean;
  /** Some text besides the title was kept. */
  hasText: boolean;
}

export interface ExtractOptions {
  /** The article's title, the document's first text. */
  title: string;
  /** The article's URL: images' document_url, and the base of file pages. */
  url: string;
  /** What a rendition must reach (see thumbnails.ts). */
  target: RenditionTarget;
}

/** An image shown with its longer side at most this is an icon (flags, logos, arrows): Wikimedia's own standard widths put icons at 20, 40 and 60 px. */
export const ICON_MAX_SIDE = 60;

/** Elements whose content is never article text or images. */
const DROP_ELEMENTS = new Set([
  'head',
  'script',
  'style',
  'noscript',
  'template',
  'title',
  'audio',
  'video',
  'iframe',
  'object',
  'embed',
  'svg',
  'math',
  'map',
  'button',
  'input',
  'select',
  'textarea',
  'canvas',
  'picture',
  'source',
  'track',
]);

/**
 * Classes of Wikipedia's non-article furniture: hatnotes, navigation boxes, maintenance and message boxes, sister-project
 * and portal boxes, references and citation markers, coordinates, edit links, icons (`noviewer`: not a content image,
 * MediaViewer's own mark), and everything the site hides from print (`noprint`: "[citation needed]", "[edit]", portal bars).
 */
const DROP_CLASSES = new Set([
  'hatnote',
  'dablink',
  'rellink',
  'shortdescription',
  'navigation-not-searchable',
  'searchaux',
  'navbox',
  'navbox-styles',
  'vertical-navbox',
  'sidebar',
  'navbar',
  'authority-control',
  'catlinks',
  'metadata',
  'ambox',
  'tmbox',
  'ombox',
  'cmbox',
  'fmbox',
  'imbox',
  'dmbox',
  'mbox-small',
  'mbox-small-left',
  'sistersitebox',
  'side-box',
  'portal',
  'portalbox',
  'portal-bar',
  'reflist',
  'refbegin',
  'references',
  'mw-references-wrap',
  'mw-references',
  'reference',
  'mw-ref',
  'mw-cite-backlink',
  'geo',
  'geo-default',
  'geo-nondefault',
  'geo-multi-punct',
  'mw-editsection',
  'mw-empty-elt',
  'noprint',
  'noviewer',
  'printfooter',
  'toc',
  'mw-indicators',
  'mwe-math-mathml-a11y',
  'mw-kartographer-map',
  'mw-kartographer-maplink',
]);

/** Parsoid `typeof`s whose content is not article text: reference lists and markers, styles, maps, rendering errors. */
const DROP_TYPEOFS = [
  'mw:Extension/references',
  'mw:Extension/ref',
  'mw:Extension/templatestyles',
  'mw:Extension/mapframe',
  'mw:Extension/maplink',
  'mw:Extension/graph',
  'mw:Extension/timeline',
  'mw:Extension/score',
  'mw:Extension/inputbox',
  'mw:Error',
];

/** Sections that are lists of sources or links, not article text (English Wikipedia's standard appendices, MOS:LAYOUT). */
const DROP_SECTIONS = new Set([
  'references',
  'notes',
  'footnotes',
  'citations',
  'sources',
  'bibliography',
  'further reading',
  'external links',
  'see also',
  'notes and references',
  'references and notes',
  'works cited',
  'cited sources',
  'general references',
  'explanatory notes',
  'general and cited references',
  'notes and citations',
  'sources and further reading',
  'references and further reading',
]);

/** Elements that end a text block (a paragraph, a list item, a cell) when they open or close. */
const BLOCK_ELEMENTS = new Set([
  'address',
  'article',
  'aside',
  'blockquote',
  'body',
  'caption',
  'center',
  'dd',
  'details',
  'div',
  'dl',
  'dt',
  'fieldset',
  'figcaption',
  'figure',
  'footer',
  'form',
  'h1',
  'h2',
  'h3',
  'h4',
  'h5',
  'h6',
  'header',
  'hgroup',
  'hr',
  'html',
  'legend',
  'li',
  'main',
  'nav',
  'ol',
  'p',
  'pre',
  'section',
  'summary',
  'table',
  'tbody',
  'td',
  'tfoot',
  'th',
  'thead',
  'tr',
  'ul',
]);

/** Classes (and `figure`) that hold one or more images with their caption; a caption is kept only if an image of its container was. */
const MEDIA_CONTAINER_CLASSES = new Set(['gallerybox', 'tsingle', 'tmulti', 'thumb', 'infobox-image']);
const CAPTION_CLASSES = new Set(['infobox-caption', 'gallerytext', 'thumbcaption']);

/** Attributes the rules read; no other attribute value is decoded. */
const WANTED_ATTRIBUTES = new Set([
  'class',
  'typeof',
  'style',
  'id',
  'role',
  'rel',
  'property',
  'href',
  'src',
  'resource',
  'alt',
  'width',
  'height',
  'data-file-width',
  'data-file-height',
]);

type TextKind = 'title' | 'para' | 'item' | 'caption' | 'heading';

/** One open element and what it passes to its content; flags are inherited when opened, so every check is O(1). */
interface Frame {
  /** Text and images inside are dropped. */
  dropped: boolean;
  /** Text inside is not kept (an infobox), images and captions are. */
  quiet: boolean;
  /** Inside a caption (figcaption, .infobox-caption, .gallerytext, .thumbcaption). */
  caption: boolean;
  /** Inside an infobox table: nested tables are part of it. */
  infobox: boolean;
  pre: boolean;
  kind: TextKind;
  /** Heading level of the heading this is inside, else 0. */
  heading: number;
  /** Index of the nearest `<section>` frame (this one included), or -1. */
  section: number;
  /** Index of the nearest media container frame (this one included), or -1. */
  container: number;
  /** For a container: an image of it was kept. */
  keptImage: boolean;
  block: boolean;
}

type Block = { kind: TextKind; text: string } | { kind: 'image'; image: ArticleImage };

const ROOT: Frame = {
  dropped: false,
  quiet: false,
  caption: false,
  infobox: false,
  pre: false,
  kind: 'para',
  heading: 0,
  section: -1,
  container: -1,
  keptImage: false,
  block: true,
};

export function extractArticle(html: string, options: ExtractOptions): ExtractedArticle {
  const extractor = new ArticleExtractor(options);
  walkHtml(html, extractor, WANTED_ATTRIBUTES);
  return extractor.finish();
}

class ArticleExtractor implements HtmlHandler {
  private readonly frames: Frame[] = [];
  private readonly blocks: Block[] = [];
  private readonly buffer = new TextBuffer();
  /** Headings not yet followed by any content: a heading is written only once something of its section is. */
  private pending: { level: number; text: string }[] = [];
  private lastImage: ArticleImage | undefined;
  private textSinceImage = true;
  private redirect: string | undefined;
  private disambiguation = false;

  constructor(private readonly options: ExtractOptions) {
    if (options.title.trim() !== '') this.blocks.push({ kind: 'title', text: options.title.trim() });
  }

  private get top(): Frame {
    return this.frames[this.frames.length - 1] ?? ROOT;
  }

  open(name: string, attributes: Readonly<Record<string, string>>): void {
    const parent = this.top;
    if (name === 'link' || name === 'meta') this.pageProperty(attributes);
    if (parent.dropped) {
      this.frames.push(parent);
      return;
    }
    const classes = attributes.class ? attributes.class.split(/\s+/) : [];
    const block = BLOCK_ELEMENTS.has(name);
    if (block) this.flush();
    const infoboxTable = name === 'table' && (parent.infobox || classes.includes('infobox'));
    const dropped =
      DROP_ELEMENTS.has(name) ||
      (name === 'table' && !infoboxTable) ||
      classes.some((c) => DROP_CLASSES.has(c)) ||
      (attributes.typeof !== undefined && DROP_TYPEOFS.some((t) => attributes.typeof!.includes(t))) ||
      attributes.id === 'coordinates' ||
      attributes.role === 'note' ||
      attributes.role === 'navigation' ||
      (attributes.style !== undefined && /display\s*:\s*none/i.test(attributes.style));
    if (dropped) {
      this.frames.push({ ...parent, dropped: true, block });
      return;
    }
    const index = this.frames.length;
    const heading = /^h[1-6]$/.test(name) ? Number(name[1]) : 0;
    const caption = name === 'figcaption' || classes.some((c) => CAPTION_CLASSES.has(c));
    const container = name === 'figure' || classes.some((c) => MEDIA_CONTAINER_CLASSES.has(c));
    const frame: Frame = {
      dropped: false,
      quiet: parent.quiet || infoboxTable,
      caption: parent.caption || caption,
      infobox: parent.infobox || infoboxTable,
      pre: parent.pre || name === 'pre',
      kind: heading ? 'heading' : caption ? 'caption' : name === 'li' || name === 'dd' || name === 'dt' ? 'item' : parent.kind,
      heading: heading || parent.heading,
      section: name === 'section' ? index : parent.section,
      container: container ? index : parent.container,
      keptImage: false,
      block,
    };
    this.frames.push(frame);
    if (name === 'img') this.image(attributes, classes);
    else if (name === 'br' && this.keepsText(frame)) this.buffer.lineBreak();
  }

  close(): void {
    const frame = this.frames.pop()!;
    if (frame.dropped) return;
    if (frame.block) this.flush(frame);
    // A container's kept image also counts for the container around it (a multiple-image box's overall caption).
    const index = this.frames.length;
    if (frame.container === index && frame.keptImage) {
      const outer = this.top.container;
      if (outer >= 0) this.frames[outer]!.keptImage = true;
    }
  }

  text(text: string): void {
    const frame = this.top;
    if (frame.dropped || !this.keepsText(frame)) return;
    this.buffer.add(text, frame.pre);
  }

  finish(): ExtractedArticle {
    this.flush();
    const hasText = this.blocks.some((b) => b.kind !== 'title' && b.kind !== 'image');
    return { items: joinBlocks(this.blocks), redirect: this.redirect, disambiguation: this.disambiguation, hasText };
  }

  private keepsText(frame: Frame): boolean {
    return !frame.quiet || frame.caption;
  }

  private pageProperty(attributes: Readonly<Record<string, string>>): void {
    // Parsoid writes a redirect as <link rel="mw:PageProp/redirect" href>, behaviour switches (__DISAMBIG__) as <meta property>.
    const property = `${attributes.rel ?? ''} ${attributes.property ?? ''}`;
    if (property.includes('mw:PageProp/redirect')) this.redirect = titleOf(attributes.href ?? '');
    if (property.includes('mw:PageProp/disambiguation')) this.disambiguation = true;
  }

  /** Ends the text block being read; `closing` is the block element whose end this is (its kind decides). */
  private flush(closing?: Frame): void {
    const frame = closing ?? this.top;
    const text = this.buffer.take();
    if (text === '') return;
    if (frame.kind === 'heading') this.heading(frame, text);
    else if (frame.kind === 'caption') this.caption(frame, text);
    else this.content({ kind: frame.kind, text });
  }

  private heading(frame: Frame, text: string): void {
    this.pending = this.pending.filter((h) => h.level < frame.heading);
    if (DROP_SECTIONS.has(text.toLowerCase()) && frame.section >= 0) {
      // The rest of the section, subsections included, is dropped: its frame and everything opened inside it.
      const section = this.frames[frame.section]!;
      section.dropped = true;
      for (let i = frame.section + 1; i < this.frames.length; i++) this.frames[i] = { ...this.frames[i]!, dropped: true };
      return;
    }
    this.pending.push({ level: frame.heading, text });
  }

  private caption(frame: Frame, text: string): void {
    // The caption of media that was not kept (a video, an icon) would describe nothing.
    if (frame.container >= 0 && !this.frames[frame.container]?.keptImage) return;
    if (this.lastImage && !this.textSinceImage && this.lastImage.caption === undefined) this.lastImage.caption = text;
    this.content({ kind: 'caption', text });
  }

  private content(block: Block): void {
    for (const heading of this.pending) this.blocks.push({ kind: 'heading', text: heading.text });
    this.pending = [];
    this.blocks.push(block);
    if (block.kind === 'image') {
      this.lastImage = block.image;
      this.textSinceImage = false;
    } else {
      this.textSinceImage = true;
    }
  }

  private image(attributes: Readonly<Record<string, string>>, classes: string[]): void {
    if (classes.some((c) => c.startsWith('mwe-math-fallback-image'))) {
      // Math is kept as its TeX source, without the {\displaystyle ...} wrapper of its alt text.
      if (this.keepsText(this.top) && attributes.alt) this.buffer.add(mathText(attributes.alt), this.top.pre);
      return;
    }
    const fileWidth = Number(attributes['data-file-width']);
    const fileHeight = Number(attributes['data-file-height']);
    const src = attributes.src;
    if (!src || !(fileWidth > 0) || !(fileHeight > 0)) return;
    const width = positive(attributes.width);
    const height = positive(attributes.height);
    if (Math.max(width ?? Infinity, height ?? Infinity) <= ICON_MAX_SIDE) return;
    const urls = fileUrls(src, fileWidth, fileHeight, this.options.target);
    if (!urls) return;
    this.flush();
    const image: ArticleImage = {
      document_url: this.options.url,
      unformatted_src: src,
      src: urls.rendition,
      original_url: urls.original,
      file_page: filePage(attributes.resource, this.options.url),
      rendered_width: width ?? null,
      rendered_height: height ?? null,
      original_width: fileWidth,
      original_height: fileHeight,
      scalable: /\.svg$/i.test(urls.original),
    };
    if (attributes.alt) image.alt_text = attributes.alt;
    this.content({ kind: 'image', image });
    const container = this.top.container;
    if (container >= 0) this.frames[container]!.keptImage = true;
  }
}

/**
 * Consecutive text blocks become one text, as OBELICS merges text nodes: list items (and definition terms and details)
 * one per line, everything else (paragraphs, headings, captions) separated by a blank line.
 */
function joinBlocks(blocks: Block[]): ArticleItem[] {
  const items: ArticleItem[] = [];
  let text: string[] = [];
  let previous: TextKind | undefined;
  const end = () => {
    if (text.length > 0) items.push({ kind: 'text', text: text.join('') });
    text = [];
    previous = undefined;
  };
  for (const block of blocks) {
    if (block.kind === 'image') {
      end();
      items.push({ kind: 'image', image: block.image });
      continue;
    }
    if (previous !== undefined) text.push(previous === 'item' && block.kind === 'item' ? '\n' : '\n\n');
    text.push(block.text);
    previous = block.kind;
  }
  end();
  return items;
}

/**
 * Text of one block, whitespace as a browser shows it: every run of white space (Unicode spaces included, as OBELICS's
 * standardize_whitespace does) is one space, `<br>` a line break, `<pre>` kept as written.
 */
class TextBuffer {
  private parts: string[] = [];
  /** The buffer is empty or ends with a space or a line break. */
  private atBreak = true;
  private startsPre = false;

  add(text: string, pre: boolean): void {
    if (pre) {
      const kept = text.replace(/\r\n?/g, '\n');
      if (kept === '') return;
      if (this.parts.length === 0) this.startsPre = true;
      this.parts.push(kept);
      this.atBreak = /\s$/.test(kept);
      return;
    }
    let collapsed = text.replace(/\s+/g, ' ');
    if (this.atBreak && collapsed.startsWith(' ')) collapsed = collapsed.slice(1);
    if (collapsed === '') return;
    this.parts.push(collapsed);
    this.atBreak = collapsed.endsWith(' ');
  }

  lineBreak(): void {
    const last = this.parts.length - 1;
    if (last >= 0 && this.parts[last]!.endsWith(' ')) this.parts[last] = this.parts[last]!.slice(0, -1);
    this.parts.push('\n');
    this.atBreak = true;
  }

  take(): string {
    if (this.parts.length === 0) return '';
    const joined = this.parts.join('');
    // A <pre> block keeps its first line's indentation; any other block is trimmed.
    const text = this.startsPre ? joined.replace(/^\n+|\s+$/g, '') : joined.trim();
    this.parts = [];
    this.atBreak = true;
    this.startsPre = false;
    return text;
  }
}

/** `{\displaystyle |G|=[G:H]|H|.}` -> `|G|=[G:H]|H|.` */
export function mathText(alt: string): string {
  const trimmed = alt.trim();
  const match = /^\{\\(?:displaystyle|textstyle|scriptstyle)\s*([\s\S]*)\}$/.exec(trimmed);
  return (match ? match[1]! : trimmed).trim();
}

/** `./Aşkale` or `./Foo_bar#Section` -> `Aşkale`, `Foo bar#Section`. */
function titleOf(href: string): string {
  let title = href.replace(/^\.\//, '');
  try {
    title = decodeURIComponent(title);
  } catch {
    // kept as written
  }
  return title.replace(/_/g, ' ');
}

/** The file's description page from Parsoid's `resource="./File:Name.jpg"`, resolved against the article's URL. */
function filePage(resource: string | undefined, articleUrl: string): string | null {
  if (!resource) return null;
  try {
    return new URL(resource, articleUrl).href;
  } catch {
    return null;
  }
}

function positive(value: string | undefined): number | undefined {
  const n = Number(value);
  return value !== undefined && value !== '' && Number.isFinite(n) && n > 0 ? n : undefined;
}
