/** Test helpers that change a directory's layout behind the clients' backs, as a fix-layout would. */
import * as xattr from '@napi-rs/xattr';
import path from 'node:path';
import { encodeRanges, rangesOf, COMMIT_HASH_INVALID } from '../../src/dht/layout.js';
import { P, diskLayout } from './disk.js';

/**
 * Rotates the ranges of `dir` one brick on (brick i gets brick i+1's range), with an unsettled commit
 * hash so that clients look everywhere for names not yet on their new hashed brick.
 */
export function rotateLayout(dirs: string[], names: string[], dir = '/'): void {
  const old = diskLayout(dirs, names, dir);
  for (let i = 0; i < dirs.length; i++) {
    const rs = rangesOf(old, names[(i + 1) % dirs.length]).map((r) => ({ ...r, commit: COMMIT_HASH_INVALID }));
    xattr.setAttributeSync(path.join(dirs[i], dir), P + 'glusterfs.dht', encodeRanges(rs));
  }
}
