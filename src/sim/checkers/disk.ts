/** What the always-on checkers read of the simulated bricks' disks: the xattrs' names, and whether a disk changed. */
import type { SimStorage } from '../storage.js';

export const LINKTO = 'trusted.glusterfs.dht.linkto';
export const GFID = 'trusted.gfid';
export const RECORD = 'trusted.dhtfs.migration';
/** Migration copies on dst until installed. */
export const COPIES = '.glusterfs/dhtfs-migrate';

/** Which disks changed since the last look (each SimStorage counts its changes; a replaced one is new). */
export class DiskChanges {
  private seen: number[];

  constructor(private readonly storages: SimStorage[]) {
    this.seen = storages.map(() => -1);
  }

  /** Whether any disk changed since the last call. */
  any(): boolean {
    let changed = false;
    this.storages.forEach((st, i) => {
      if (st.generation === this.seen[i]) return;
      this.seen[i] = st.generation;
      changed = true;
    });
    return changed;
  }
}
