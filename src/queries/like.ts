/**
 * LIKE patterns from text that may hold LIKE's own wildcards (`_` in john_doe@example.com): the text is
 * escaped with a backslash, which the statement names as its escape character (`LIKE_ESCAPE`), the same
 * on SQLite and PostgreSQL.
 */
export const LIKE_ESCAPE = "escape '\\'";

/** `text` matched literally, with `%` before and/or after as asked. */
export function likePattern(text: string, { prefix = false, suffix = false } = {}): string {
  const literal = text.replace(/[\\%_]/g, (c) => `\\${c}`);
  return `${prefix ? '%' : ''}${literal}${suffix ? '%' : ''}`;
}
