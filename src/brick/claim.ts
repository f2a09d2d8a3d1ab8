/**
 * One process per brick directory (edge code): a brick process holds an exclusive open file description
 * lock on `.glusterfs/dhtfs-brick.lock` for its whole life (the kernel drops it when the process ends,
 * however it ends), and writes its pid there. A second process on the same directory is refused.
 */
import fs from 'node:fs';
import { codeOf, ignoreCodes } from '../common/errors.js';
import type { DiskStorage } from '../storage/disk.js';
import { O_CREAT, O_RDWR } from '../storage/storage.js';

export const LOCK_FILE = '.glusterfs/dhtfs-brick.lock';

export async function lockBrickDir(st: DiskStorage): Promise<void> {
  let isDir = false;
  try {
    isDir = fs.statSync(st.root).isDirectory();
  } catch {
    /* below */
  }
  if (!isDir) throw new Error(`brick directory ${st.root} does not exist or is not a directory`);
  try {
    st.mkdir('.glusterfs', 0o700);
  } catch (e) {
    ignoreCodes(e, 'EEXIST');
  }
  const h = st.open(LOCK_FILE, O_RDWR | O_CREAT, 0o600);
  const holder = async () => Number((await st.read(h, 0, 32)).toString('utf8').trim()) || null;
  const refuse = (pid: number | null) => {
    st.close(h);
    return new Error(`brick directory ${st.root} is already served by another brick process${pid ? ` (pid ${pid})` : ''}`);
  };
  if (st.lock) {
    if (!st.lock(h, 0, 'exclusive')) throw refuse(await holder());
  } else {
    // Without the native addon: the pid written there, if that process lives.
    const pid = await holder();
    if (pid && pid !== process.pid) {
      let alive = true;
      try {
        process.kill(pid, 0);
      } catch (e) {
        alive = codeOf(e) === 'EPERM';
      }
      if (alive) throw refuse(pid);
    }
  }
  st.ftruncate(h, 0);
  await st.write(h, 0, Buffer.from(`${process.pid}\n`));
  // `h` stays open while the process lives: the lock goes with it.
}
