/**
 * A brick server process: real disk storage, real TCP, pino logs. The edge around Brick.
 */
import pino from 'pino';
import { Brick } from './brick.js';
import { DiskStorage } from '../storage/disk.js';
import { realClock, realRandom } from '../common/real-env.js';
import { serveConnection } from '../wire/rpc.js';
import { tcpNetwork } from '../wire/tcp.js';
import type { Listener } from '../wire/transport.js';
import { DEFAULT_MAX_FRAME } from '../wire/frame.js';

export interface BrickServeOptions {
  dir: string;
  host: string;
  port: number;
  name: string;
  volumeId: string;
  secret: string;
  xattrPrefix?: string;
  maxFrame?: number;
  logLevel?: string;
}

export function defaultXattrPrefix(): string {
  return process.getuid?.() === 0 ? 'trusted.' : 'user.';
}

export async function serveBrick(o: BrickServeOptions): Promise<{ listener: Listener; brick: Brick; close(): Promise<void> }> {
  const log = pino({ level: o.logLevel ?? 'info', base: { brick: o.name } }, pino.destination(2));
  process.umask(0);
  const brick = new Brick(
    new DiskStorage(o.dir),
    { name: o.name, volumeId: o.volumeId, xattrPrefix: o.xattrPrefix ?? defaultXattrPrefix() },
    realClock,
    realRandom,
    (level, msg, extra) => log[level](extra ?? {}, msg),
  );
  brick.init();
  const listener = await tcpNetwork.listen(o.host, o.port, (conn) =>
    serveConnection(conn, brick, {
      volumeId: o.volumeId,
      secret: o.secret,
      maxFrame: o.maxFrame ?? DEFAULT_MAX_FRAME,
      random: realRandom,
      log: (level, msg, extra) => log[level](extra ?? {}, msg),
    }),
  );
  log.info({ dir: o.dir, port: listener.port }, 'brick serving');
  return { listener, brick, close: () => listener.close() };
}
