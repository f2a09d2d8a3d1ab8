/**
 * The migration protocol's records (docs/MIGRATION.md): the commit record src keeps on its old copy
 * ("moved to dst, token, path"), the error codes a step answers with, and how a caller reads
 * migInstall's refusals.
 */
import { codeOf } from '../common/errors.js';
import type { DirtyRecord, Moved } from '../wire/types.js';

export type { DirtyRecord, Moved };

/** Custom code: a migration step made without a live lease (a fenced migrator). */
export const EFENCED = 'EFENCED';

/** Parses the commit record: JSON {"moved": dst, "token": ..., "path": ...}. */
export function parseMoved(b: Uint8Array | null): Moved | null {
  if (!b) return null;
  try {
    const v = JSON.parse(Buffer.from(b).toString('utf8'));
    if (typeof v.moved === 'string' && typeof v.token === 'string' && typeof v.path === 'string') return { dst: v.moved, token: v.token, path: v.path };
  } catch {
    /* not a record of ours */
  }
  return null;
}

export function formatMoved(m: Moved): Buffer {
  return Buffer.from(JSON.stringify({ moved: m.dst, token: m.token, path: m.path }));
}

/**
 * migInstall's answer when a committed copy can never be installed: the name on dst is another file's
 * (EEXIST), or neither the copy nor the file is there (ENOENT: installed, then renamed or unlinked).
 */
export function supersededInstall(e: unknown): boolean {
  const c = codeOf(e);
  return c === 'ENOENT' || c === 'EEXIST';
}
