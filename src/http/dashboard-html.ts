/**
 * HTML that is safe to send: built only by `h`, which escapes every interpolated value that is not itself `Html`.
 * Tenant-controlled strings (app names, commit messages, build output, audit details) therefore cannot open a tag or
 * leave an attribute. A tiny synchronous tag instead of `hono/html`, whose values may be promises: the dashboard
 * renders fragments for Server-Sent Events outside a request and wants plain strings.
 */
export class Html {
  readonly value: string;
  constructor(value: string) {
    this.value = value;
  }
  toString(): string {
    return this.value;
  }
}

const ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => ESCAPES[ch] ?? ch);
}

type Part = Html | string | number | boolean | null | undefined | readonly Part[];

function render(part: Part): string {
  if (part === null || part === undefined || part === false) return "";
  if (part instanceof Html) return part.value;
  if (Array.isArray(part)) return part.map(render).join("");
  return escapeHtml(String(part));
}

/** Tagged template: literal parts are trusted markup, every `${value}` is escaped (arrays are concatenated). */
export function h(strings: TemplateStringsArray, ...values: Part[]): Html {
  let out = strings[0] ?? "";
  values.forEach((value, i) => {
    out += render(value) + (strings[i + 1] ?? "");
  });
  return new Html(out);
}
