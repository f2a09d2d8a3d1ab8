/**
 * The clients' rules of the migration protocol (docs/MIGRATION.md, "Client rules"): whoever meets a
 * committed migration (an fd operation answered EMOVED, a lookup that finds src's commit record, the
 * rebalancer's walk) finishes it: dst's copy is installed at the name (idempotent), and the old copy that
 * holds the commit record is removed once the copy is durably in place. src/dht/client.ts (lookup,
 * finishMove) and src/api/volume.ts (followMove: every fd of the file reopened on dst) call these.
 */
import { bestEffort } from '../common/errors.js';
import type { DhtClient } from '../dht/client.js';
import type { Attr, Moved } from '../wire/types.js';
import { supersededInstall } from './records.js';

/** step `install`, by a client that met the commit record `m`: dst's copy takes the name. */
export async function installMoved(c: DhtClient, gfid: string, m: Moved, durable = false): Promise<Attr> {
  if (!c.subvols.has(m.dst)) await c.refreshTopology(true); // moved to a brick added since we connected
  return c.sv(m.dst).call('migInstall', { path: m.path, gfid, token: m.token, durable });
}

/**
 * Ends a committed migration whose record sits at `path` on `recordOn`: installs dst's copy durably (the
 * record that points at the copy goes next), then removes the old copy (step `cleanup`). Returns dst's
 * attributes, or null if the copy can never be installed (dst's name is another file's, or neither the
 * copy nor the file is there: the file was renamed over, renamed or unlinked after the commit); the stale
 * record is removed then, and an error doing so is thrown.
 */
export async function settleMove(c: DhtClient, path: string, gfid: string, m: Moved, recordOn: string): Promise<Attr | null> {
  let attr: Attr | null;
  try {
    attr = await installMoved(c, gfid, m, true);
  } catch (e) {
    if (!supersededInstall(e)) throw e;
    attr = null;
  }
  const cleanup = c.sv(recordOn).call('migCleanup', { path, gfid });
  if (attr) await cleanup.catch(bestEffort('migCleanup', c.log));
  else await cleanup;
  return attr;
}
