/**
 * Brick ports (edge code): a brick given no port binds a free one of a dedicated range, as
 * GlusterFS's bricks take theirs from base-port 49152 up to max-port 60999, and only then tells anyone
 * its port (the listening line on stdout): no port is probed free and bound later, when any outgoing
 * connection may have taken it.
 */
import { randomInt } from 'node:crypto';
import { FsError, ignoreCodes } from '../common/errors.js';

export interface PortRange {
  first: number;
  last: number;
}

/** GlusterFS's range. DHTFS_PORT_RANGE=FIRST-LAST changes it. */
export const DEFAULT_PORT_RANGE: PortRange = { first: 49152, last: 60999 };

/** `FIRST-LAST` (or one port); undefined: DHTFS_PORT_RANGE, else the default. */
export function parsePortRange(s: string | undefined = process.env.DHTFS_PORT_RANGE): PortRange {
  if (s === undefined || s === '') return DEFAULT_PORT_RANGE;
  const m = /^(\d+)(?:-(\d+))?$/.exec(s.trim());
  const first = m ? Number(m[1]) : NaN;
  const last = m ? Number(m[2] ?? m[1]) : NaN;
  if (!(first >= 1 && last <= 65535 && first <= last)) throw new Error(`bad port range '${s}': FIRST-LAST within 1-65535`);
  return { first, last };
}

/**
 * Binds a free port of `range`: from a random one of it on, the next one on EADDRINUSE, round the range.
 * Not from its start as GlusterFS does: a brick's port is its spec's for good (no portmapper tells
 * clients a new one), and a port just freed by a brick that died must not be the next brick's, on this
 * host, before it comes back.
 */
export async function listenInRange<L>(range: PortRange, listen: (port: number) => Promise<L>): Promise<L> {
  const size = range.last - range.first + 1;
  const from = randomInt(size);
  for (let i = 0; i < size; i++) {
    const p = range.first + ((from + i) % size);
    try {
      return await listen(p);
    } catch (e) {
      ignoreCodes(e, 'EADDRINUSE', 'EACCES');
    }
  }
  throw new FsError('EADDRINUSE', `no free port in ${range.first}-${range.last}`);
}
