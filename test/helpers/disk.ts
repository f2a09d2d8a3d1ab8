/** Looks at bricks' directories directly, as an administrator would. */
import fs from 'node:fs';
import path from 'node:path';
import * as xattr from '@napi-rs/xattr';
import { decodeRanges, searchLayout, type Layout } from '../../src/dht/layout.js';
import { dhtHash } from '../../src/dht/hash.js';
import { gfidFromBytes } from '../../src/common/gfid.js';

export const P = process.getuid?.() === 0 ? 'trusted.' : 'user.';

/** A file's gfid handle on a brick: .glusterfs/xx/yy/GFID, a hard link to its data file. */
export function handleFile(dir: string, gfid: string): string {
  return path.join(dir, '.glusterfs', gfid.slice(0, 2), gfid.slice(2, 4), gfid);
}

export interface OnDisk {
  mode: number;
  size: number;
  gfid: string | null;
  linkto: string | null;
  nlink: number;
}

export function onDisk(dir: string, p: string): OnDisk | null {
  const abs = path.join(dir, p);
  let st: fs.Stats;
  try {
    st = fs.lstatSync(abs);
  } catch {
    return null;
  }
  const g = xattr.getAttributeSync(abs, P + 'gfid');
  const l = xattr.getAttributeSync(abs, P + 'glusterfs.dht.linkto');
  return { mode: st.mode, size: st.size, nlink: st.nlink, gfid: g ? gfidFromBytes(g) : null, linkto: l ? l.toString().replace(/\0$/, '') : null };
}

/** A directory's layout as written on the bricks' disks. */
export function diskLayout(dirs: string[], names: string[], dirPath: string): Layout {
  return dirs.flatMap((d, i) => {
    const b = xattr.getAttributeSync(path.join(d, dirPath), P + 'glusterfs.dht');
    if (!b) return [{ brick: names[i], commit: 0, type: 0, start: 0, stop: 0 }];
    return decodeRanges(b).map((r) => ({ brick: names[i], ...r }));
  });
}

/** The brick index a name hashes to, computed from the on-disk layout of its parent. */
export function hashedIndex(dirs: string[], names: string[], parent: string, name: string): number {
  const b = searchLayout(diskLayout(dirs, names, parent), dhtHash(name));
  return names.indexOf(b!);
}

/** Names in `parent` that hash to brick `want`. */
export function namesOn(dirs: string[], names: string[], parent: string, want: number, count: number, prefix = 'f'): string[] {
  const layout = diskLayout(dirs, names, parent);
  const out: string[] = [];
  for (let i = 0; out.length < count; i++) {
    if (i > 10_000_000) throw new Error(`no name hashes to brick ${want}`);
    if (searchLayout(layout, dhtHash(`${prefix}${i}`)) === names[want]) out.push(`${prefix}${i}`);
  }
  return out;
}

/** Every file under a brick, without .glusterfs: relative path -> OnDisk. */
export function scanBrick(dir: string): Map<string, OnDisk> {
  const out = new Map<string, OnDisk>();
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      if (rel === '' && e.name === '.glusterfs') continue;
      const r = rel ? `${rel}/${e.name}` : e.name;
      out.set(r, onDisk(dir, r)!);
      if (e.isDirectory()) walk(r);
    }
  };
  walk('');
  return out;
}

/**
 * A directory tree as text: each entry's path, mode, owner, size and mtime, and `withData` a file's
 * bytes too: two snapshots differ if anything below `dir` changed.
 */
export function snapshot(dir: string, withData = false): string {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = path.join(d, e.name);
      const st = fs.lstatSync(p);
      out.push(`${path.relative(dir, p)} ${st.mode} ${st.uid} ${st.size} ${st.mtimeMs}` + (withData && st.isFile() ? ' ' + fs.readFileSync(p).toString('base64') : ''));
      if (e.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out.join('\n');
}
