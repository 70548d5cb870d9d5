import { Tokenizer, type TokenizerCallbacks } from 'htmlparser2';

/**
 * HTML as a stream of open, close and text events, in document order, with no DOM and no recursion: htmlparser2's
 * tokenizer and a stack of our own. htmlparser2's Parser keeps its open elements in an array it shifts and unshifts,
 * which costs time quadratic in the nesting depth (5 s for 100,000 nested divs here, 15 s when the end tags do not
 * match); this stack pushes and pops, and an end tag with no open element of its name is dropped in O(1), so any
 * input is walked in linear time.
 *
 * Every open is matched by one close, innermost first (elements left open at the end are closed there). Void elements
 * and `<x/>` close at once. Only attributes named in `wanted` are decoded, so the large `data-mw` JSON of Parsoid
 * HTML is never built into strings.
 */
export interface HtmlHandler {
  open(name: string, attributes: Readonly<Record<string, string>>): void;
  close(name: string): void;
  text(text: string): void;
}

const VOID_ELEMENTS = new Set([
  'area',
  'base',
  'basefont',
  'br',
  'col',
  'command',
  'embed',
  'frame',
  'hr',
  'img',
  'input',
  'isindex',
  'keygen',
  'link',
  'meta',
  'param',
  'source',
  'track',
  'wbr',
]);

export function walkHtml(html: string, handler: HtmlHandler, wanted: ReadonlySet<string>): void {
  // Attribute names are compared in place, by length first: slicing and lowercasing every name (Parsoid writes a dozen
  // per element) took a sixth of the extraction's time.
  const byLength: string[][] = [];
  for (const name of wanted) {
    byLength[name.length] ??= [];
    byLength[name.length]!.push(name);
  }
  const stack: string[] = [];
  const open = new Map<string, number>();
  let tag = '';
  let attributes: Record<string, string> = {};
  let attribute = '';
  let value = '';
  let keep = false;

  const push = (name: string) => {
    stack.push(name);
    open.set(name, (open.get(name) ?? 0) + 1);
  };
  const pop = () => {
    const name = stack.pop()!;
    open.set(name, open.get(name)! - 1);
    handler.close(name);
  };
  const startTag = (selfClosing: boolean) => {
    handler.open(tag, attributes);
    if (selfClosing || VOID_ELEMENTS.has(tag)) handler.close(tag);
    else push(tag);
    attributes = {};
  };

  const callbacks: TokenizerCallbacks = {
    onopentagname(start, end) {
      tag = html.slice(start, end).toLowerCase();
    },
    onattribname(start, end) {
      keep = false;
      for (const name of byLength[end - start] ?? []) {
        if (!sameName(html, start, name)) continue;
        attribute = name;
        keep = !(name in attributes);
        value = '';
        return;
      }
    },
    onattribdata(start, end) {
      if (keep) value += html.slice(start, end);
    },
    onattribentity(codepoint) {
      if (keep) value += character(codepoint);
    },
    onattribend() {
      if (keep) attributes[attribute] = value;
      keep = false;
    },
    onopentagend() {
      startTag(false);
    },
    onselfclosingtag() {
      startTag(true);
    },
    onclosetag(start, end) {
      // The usual case, the end tag of the innermost element, without making a string.
      const top = stack[stack.length - 1];
      if (top !== undefined && end - start === top.length && sameName(html, start, top)) return pop();
      const name = html.slice(start, end).toLowerCase();
      if (VOID_ELEMENTS.has(name)) {
        // `</br>` is a line break in browsers (and OBELICS reads it as one); other void end tags mean nothing.
        if (name === 'br') {
          handler.open('br', {});
          handler.close('br');
        }
        return;
      }
      if (!open.get(name)) return;
      while (stack[stack.length - 1] !== name) pop();
      pop();
    },
    ontext(start, end) {
      handler.text(html.slice(start, end));
    },
    ontextentity(codepoint) {
      handler.text(character(codepoint));
    },
    oncdata() {},
    oncomment() {},
    ondeclaration() {},
    onprocessinginstruction() {},
    onend() {
      while (stack.length > 0) pop();
    },
  };
  const tokenizer = new Tokenizer({ decodeEntities: true }, callbacks);
  tokenizer.write(html);
  tokenizer.end();
}

/** Whether html at `start` holds `name` (lowercase ASCII), in any case, without making a string. */
function sameName(html: string, start: number, name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    let c = html.charCodeAt(start + i);
    if (c >= 65 && c <= 90) c += 32;
    if (c !== name.charCodeAt(i)) return false;
  }
  return true;
}

/** The decoder already maps invalid references to U+FFFD; this guards String.fromCodePoint's RangeError regardless. */
function character(codepoint: number): string {
  return codepoint >= 0 && codepoint <= 0x10ffff ? String.fromCodePoint(codepoint) : '\ufffd';
}
