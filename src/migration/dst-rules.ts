/**
 * dst's rules in the migration protocol (docs/MIGRATION.md): what steps `prepare-dst` and `install`, and
 * the move of a name with no data (special.ts), do given what is at the name on dst now. Pure decisions;
 * the brick's ops (src/brick/ops/mig-dst.ts) look at the disk, call these and do what they answer.
 */
import { FsError } from '../common/errors.js';
import type { Attr } from '../wire/types.js';

/** A migration copy's name in dst's private folder (the token is hex: wire/ops.ts's hexToken). */
export function copyName(gfid: string, token: string): string {
  return `${gfid}.${token}`;
}

/** How error messages name the name on dst (`/a/b on brick1`) and the copy. */
export interface Where {
  name: string;
  copy: string;
}

/**
 * step `prepare-dst`: the name on dst holds nothing (a linkto to src is made, so that lookups on the
 * hashed brick find the file) or a linkto of this file (pointed at src if it is not). Anything else is
 * another file: EEXIST.
 */
export function prepareAt(cur: Attr | null, gfid: string, src: string, w: Where): 'make-linkto' | 'point-linkto' | 'ready' {
  if (!cur) return 'make-linkto';
  if (cur.linkto === undefined || cur.gfid !== gfid) throw new FsError('EEXIST', `${w.name} is not a linkto of this file`);
  return cur.linkto !== src ? 'point-linkto' : 'ready';
}

/**
 * step `install` (idempotent: anyone who meets the commit may do it): the copy is renamed over the name,
 * which holds nothing or a linkto of this file; or it was installed already (the name holds this file's
 * data). The name holding another file's data means the file was renamed over after the commit (EEXIST
 * while the copy is there), or installed, then renamed or unlinked (ENOENT: the copy is gone);
 * supersededInstall (records.ts) reads both as "never to be installed".
 */
export function installAt(cur: Attr | null, gfid: string, hasCopy: boolean, w: Where): 'installed' | 'rename' {
  if (cur && cur.linkto === undefined) {
    if (cur.gfid !== gfid) throw new FsError(hasCopy ? 'EEXIST' : 'ENOENT', `${w.name} is another file`);
    return 'installed';
  }
  if (!hasCopy) throw new FsError('ENOENT', `no migration copy ${w.copy}`);
  if (cur && cur.gfid !== gfid) throw new FsError('EEXIST', `${w.name} is a linkto of another file`);
  return 'rename';
}

/**
 * A name with no data (symlink, FIFO, socket, device) moved to dst: made there unless the same file is
 * there already (a retry: its attributes are given again); the name must hold nothing or a linkto of
 * this file.
 */
export function specialAt(cur: Attr | null, gfid: string, same: (cur: Attr) => boolean, w: Pick<Where, 'name'>): 'there' | 'make' {
  if (cur && cur.gfid === gfid && cur.linkto === undefined && same(cur)) return 'there';
  if (cur && (cur.linkto === undefined || cur.gfid !== gfid)) throw new FsError('EEXIST', `${w.name} is another file`);
  return 'make';
}
