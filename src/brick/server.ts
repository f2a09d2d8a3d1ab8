/**
 * A brick server process: real disk storage, real TCP, pino logs. The edge around Brick.
 */
import pino from 'pino';
import { Brick } from './brick.js';
import { DiskStorage, resolution } from '../storage/disk.js';
import { startHealthCheck } from '../storage/health.js';
import { realClock, realRandom } from '../common/real-env.js';
import { serveConnection } from '../wire/rpc.js';
import { tcpNetwork } from '../wire/tcp.js';
import { tlsNetwork, type TlsFiles } from '../wire/tls.js';
import { peerBricks } from './peers.js';
import type { Listener } from '../wire/transport.js';
import { DEFAULT_MAX_FRAME } from '../wire/frame.js';
import { ConnectionGate, LIMIT_DEFAULTS, LimitLog, addressOf, clip, limitsFrom, type BrickLimits } from '../wire/limits.js';
import { readFileSync } from 'node:fs';
import { lockBrickDir } from './claim.js';
import { listenInRange, parsePortRange, type PortRange } from './ports.js';

export interface BrickServeOptions {
  dir: string;
  host: string;
  /** 0: a free port of `portRange` (GlusterFS's 49152-60999 by default). */
  port: number;
  portRange?: PortRange;
  name: string;
  /** The brick's id in the volume (see BrickConfig.brickId). */
  brickId?: string;
  volumeId: string;
  secret: string;
  /** The volume's administrative secret (volume changes: topology, commit hash); none: no session may make them. */
  adminSecret?: string;
  xattrPrefix?: string;
  maxFrame?: number;
  logLevel?: string;
  /** Limits over the defaults and the environment's DHTFS_LIMIT_* (tests). */
  limits?: Partial<BrickLimits>;
  /** TLS (transport.tls on): the brick's certificate and key, the CA clients must be signed by, its CRL. */
  tls?: TlsFiles;
}

/** The soft RLIMIT_NOFILE of this process (Linux: /proc/self/limits), or null. */
function openFileLimit(): number | null {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/**
 * The brick's limits: defaults, then what the process's fd limit allows (a quarter of it for
 * connections, of which half per address and a quarter unauthenticated; the rest but a reserve of 128
 * for open files, a quarter of those per session), then the environment's DHTFS_LIMIT_* variables.
 */
export function brickLimits(extra: Partial<BrickLimits> = {}): BrickLimits {
  const nofile = openFileLimit();
  const derived: Partial<BrickLimits> = {};
  if (nofile !== null) {
    const conns = Math.max(16, Math.min(LIMIT_DEFAULTS.maxConnections, Math.floor(nofile / 4)));
    derived.maxConnections = conns;
    derived.maxConnectionsPerAddress = Math.min(LIMIT_DEFAULTS.maxConnectionsPerAddress, Math.max(8, Math.floor(conns / 2)));
    derived.maxUnauthenticated = Math.min(LIMIT_DEFAULTS.maxUnauthenticated, Math.max(8, Math.floor(conns / 4)));
    derived.maxUnauthenticatedPerAddress = Math.min(LIMIT_DEFAULTS.maxUnauthenticatedPerAddress, derived.maxUnauthenticated);
    derived.maxFds = Math.max(64, nofile - conns - 128);
    derived.maxFdsPerSession = Math.min(LIMIT_DEFAULTS.maxFdsPerSession, Math.max(16, Math.floor(derived.maxFds / 4)));
  }
  return { ...limitsFrom(process.env, derived), ...extra };
}

/** Log lines are cut: a client's words in them (names, reasons) never fill the log. */
const MAX_LOG_MSG = 400;
function clipExtra(extra: Record<string, unknown> | undefined): Record<string, unknown> {
  if (!extra) return {};
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(extra)) out[k] = typeof v === 'string' ? clip(v) : v;
  return out;
}

export function defaultXattrPrefix(): string {
  return process.getuid?.() === 0 ? 'trusted.' : 'user.';
}

export async function serveBrick(o: BrickServeOptions): Promise<{ listener: Listener; brick: Brick; close(): Promise<void> }> {
  const pinoLog = pino({ level: o.logLevel ?? 'info', base: { brick: o.name } }, pino.destination(2));
  const log = {
    info: (extra: Record<string, unknown>, msg: string) => pinoLog.info(clipExtra(extra), clip(msg, MAX_LOG_MSG)),
    warn: (extra: Record<string, unknown>, msg: string) => pinoLog.warn(clipExtra(extra), clip(msg, MAX_LOG_MSG)),
    error: (extra: Record<string, unknown>, msg: string) => pinoLog.error(clipExtra(extra), clip(msg, MAX_LOG_MSG)),
  };
  const limits = brickLimits(o.limits);
  const limitLog = new LimitLog(realClock, (msg, extra) => log.warn(extra ?? {}, msg));
  const gate = new ConnectionGate(limits, limitLog);
  const budget = { owed: 0 };
  process.umask(0);
  const storage = new DiskStorage(o.dir);
  const brick = new Brick(storage, { name: o.name, volumeId: o.volumeId, xattrPrefix: o.xattrPrefix ?? defaultXattrPrefix(), limits, ...(o.brickId ? { brickId: o.brickId } : {}) }, realClock, realRandom, (level, msg, extra) =>
    log[level](extra ?? {}, msg),
  );
  // The directory is this process's alone before anything is written there; it is claimed as this
  // brick (init) once the port is bound: a brick that cannot bind leaves the directory as it was.
  await lockBrickDir(storage);
  // With TLS, only clients with a certificate of the CA (not revoked) get this far; the HMAC handshake
  // follows inside the session as on TCP.
  const network = o.tls
    ? tlsNetwork({
        files: o.tls,
        handshakeMs: limits.handshakeMs,
        maxSockets: limits.maxConnections,
        log: (msg, extra) => log.warn(extra, msg),
        // One line per reason and address per 10 s (the rest counted in the next line).
        refused: (remote, reason, extra) => limitLog.line(`tls:${reason}:${addressOf(remote)}`, 'TLS client refused', { remote, reason, ...extra }),
      })
    : tcpNetwork;
  // Migrations between hosts: dst reads src's file from src over the brick path, as a client of it.
  brick.peers = peerBricks(network, { volumeId: o.volumeId, secret: o.secret, self: o.name }, realClock, (level, msg, extra) => log[level](extra ?? {}, msg));
  const listen = (port: number) =>
    network.listen(o.host, port, (conn) => {
      const g = gate.admit(conn);
      if (!g) return;
      serveConnection(conn, brick, {
        volumeId: o.volumeId,
        secret: o.secret,
        adminSecret: o.adminSecret,
        brickName: o.name,
        maxFrame: o.maxFrame ?? DEFAULT_MAX_FRAME,
        random: realRandom,
        log: (level, msg, extra) => log[level](extra ?? {}, msg),
        clock: realClock,
        limits,
        limitLog,
        gate: g,
        budget,
        admit: (admin) => brick.certRefused(conn.peerName, conn.peerUnit, admin),
      });
    });
  const listener = o.port === 0 ? await listenInRange(o.portRange ?? parsePortRange(), listen) : await listen(o.port);
  try {
    brick.init(); // before any connection is handled (those come in later turns of the event loop)
    brick.loadOptions();
  } catch (e) {
    await listener.close();
    throw e;
  }
  // A hung or failing file system below the brick takes the brick down (storage/health.ts).
  const health = startHealthCheck(storage, o.name, limits, (level, msg, extra) => log[level](extra ?? {}, msg));
  const names = resolution();
  if (names === 'paths')
    log.warn({}, "the native/copy addon is missing: names are resolved by path, not beneath the brick folder's descriptor (a folder swapped for a symlink on this disk during a request could lead outside the brick); run scripts/setup.sh");
  log.info({ dir: o.dir, port: listener.port, tls: !!o.tls, limits, names, watchdog: health.watchdog }, 'brick serving');
  return {
    listener,
    brick,
    close: () => {
      health.stop();
      brick.peers?.close();
      return listener.close();
    },
  };
}
