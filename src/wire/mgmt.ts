/**
 * The management path (issue 19): node daemons serve volume specs to clients, as glusterd serves volfiles
 * on port 24007, so that a client mounts `host1:/NAME` with no spec file copied by hand. It runs over TLS
 * with mutual authentication (./tls.ts): a spec holds the volume's secret, so only a client with a
 * certificate of the cluster's CA, not revoked, gets one.
 *
 * The protocol is one request and one reply per connection, each one line of JSON:
 *   client: {"op":"getSpec","volume":"NAME"}
 *   server: {"ok":true,"spec":{...},"crl":"PEM"}  or  {"ok":false,"error":"...","code":"ENOENT"}
 * The reply carries the cluster CA's current CRL: clients keep it (the newest they saw) and refuse a node or
 * brick whose certificate it revokes.
 * The transport is injected (a Network): the server and the client here touch no socket themselves.
 */
import type { VolumeSpec } from '../dht/spec.js';
import type { Conn, Listener, Network } from './transport.js';

/** The management port a node daemon listens on by default (glusterd's). */
export const MGMT_PORT = 24007;
/** A request or a reply longer than this is refused (a spec of thousands of bricks fits). */
const MAX_LINE = 4 * 1024 * 1024;
/** How long one exchange may take, either side. */
export const MGMT_TIMEOUT_MS = 10_000;

export interface MgmtRequest {
  op: 'getSpec';
  volume: string;
}

export type MgmtReply = { ok: true; spec: VolumeSpec; crl?: string } | { ok: false; error: string; code?: string };

/** A node to ask: `host` and its management port. */
export interface MgmtServerAddress {
  host: string;
  port: number;
}

/**
 * `HOST:/NAME` (a volume by the host of a node daemon, as `mount -t glusterfs host1:/vol`), with
 * `HOST:PORT:/NAME` for a management port other than the default; null when `s` is not one.
 */
export function parseVolumeAddress(s: string): { server: MgmtServerAddress; volume: string } | null {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[^:/[\]\s]+)(?::(\d{1,5}))?:\/([A-Za-z0-9][A-Za-z0-9._-]{0,63})$/.exec(s);
  if (!m) return null;
  const port = m[2] ? Number(m[2]) : MGMT_PORT;
  if (port < 1 || port > 65535) return null;
  return { server: { host: m[1].replace(/^\[|\]$/g, ''), port }, volume: m[3] };
}

/** `host2:host3` (mount's backup-volfile-servers), each host with an optional `[PORT]`-less default port. */
export function parseServerList(s: string, port = MGMT_PORT): MgmtServerAddress[] {
  return s
    .split(/[:,]/)
    .map((h) => h.trim())
    .filter(Boolean)
    .map((host) => ({ host, port }));
}

/** Reads one line of JSON from `c`, then calls `fn` with it (once); `onEnd` if the connection ends first. */
function readLine(c: Conn, fn: (line: string) => void, onEnd: (why: string) => void): void {
  const parts: Buffer[] = [];
  let size = 0;
  let done = false;
  c.onData((chunk) => {
    if (done) return;
    const nl = chunk.indexOf(10);
    const piece = Buffer.from(nl < 0 ? chunk : chunk.subarray(0, nl));
    parts.push(piece);
    size += piece.length;
    if (size > MAX_LINE) {
      done = true;
      c.close('line too long');
      onEnd('line too long');
      return;
    }
    if (nl < 0) return;
    done = true;
    fn(Buffer.concat(parts).toString('utf8'));
  });
  c.onClose((why) => {
    if (!done) {
      done = true;
      onEnd(why ?? 'closed');
    }
  });
}

function send(c: Conn, value: unknown): void {
  c.write([Buffer.from(JSON.stringify(value) + '\n')]);
  c.close(undefined, true);
}

/** A timer: `fn` after `ms` unless cancelled (the injected clock's). */
export type SetTimer = (ms: number, fn: () => void) => { cancel(): void };

/**
 * Serves the management protocol on `host:port` over `network` (TLS in the product): `handle` answers
 * each request; a malformed one is answered with an error and the connection closed, and a connection
 * that sends no whole request within MGMT_TIMEOUT_MS is closed.
 */
export function serveMgmt(network: Network, host: string, port: number, timer: SetTimer, handle: (req: MgmtRequest, remote: string, peerName: string | undefined) => Promise<MgmtReply>): Promise<Listener> {
  return network.listen(host, port, (c) => {
    const idle = timer(MGMT_TIMEOUT_MS, () => c.close('no request in time'));
    c.onClose(() => idle.cancel());
    readLine(
      c,
      (line) => {
        idle.cancel();
        let req: MgmtRequest;
        try {
          req = JSON.parse(line) as MgmtRequest;
          if (!req || req.op !== 'getSpec' || typeof req.volume !== 'string') throw new Error('not a request');
        } catch {
          send(c, { ok: false, error: 'bad request', code: 'EINVAL' } satisfies MgmtReply);
          return;
        }
        handle(req, c.remote, c.peerName).then(
          (r) => send(c, r),
          (e) => send(c, { ok: false, error: (e as Error).message, code: 'EIO' } satisfies MgmtReply),
        );
      },
      () => {},
    );
  });
}

/** One request to one server: its reply, or an Error (unreachable, refused, no reply in time). */
export function askMgmt(network: Network, server: MgmtServerAddress, req: MgmtRequest, timer: SetTimer): Promise<MgmtReply> {
  return new Promise((resolve, reject) => {
    let settled = false;
    let conn: Conn | null = null;
    const finish = (f: () => void) => {
      if (settled) return;
      settled = true;
      t.cancel();
      f();
    };
    const t = timer(MGMT_TIMEOUT_MS, () => {
      finish(() => reject(new Error(`no reply within ${MGMT_TIMEOUT_MS / 1000} s`)));
      conn?.close('timeout');
    });
    network.connect(server.host, server.port).then(
      (c) => {
        conn = c;
        if (settled) return c.close('timeout');
        readLine(
          c,
          (line) => {
            try {
              const r = JSON.parse(line) as MgmtReply;
              if (!r || typeof r.ok !== 'boolean') throw new Error('not a reply');
              finish(() => resolve(r));
            } catch {
              finish(() => reject(new Error('a reply that is not the management protocol')));
            }
            c.close();
          },
          // A server that refused our certificate closes the session: that is what the client sees.
          (why) => finish(() => reject(new Error(`connection closed without a reply (${why}; a certificate the node refused?)`))),
        );
        c.write([Buffer.from(JSON.stringify(req) + '\n')]);
      },
      (e) => finish(() => reject(e as Error)),
    );
  });
}

/**
 * The spec of `volume` from the first of `servers` that answers, in order (a mount's server, then its
 * backup-volfile-servers). A server that answers that the volume does not exist, is not started or is not
 * for this client ends the search (every node reads one store); one that cannot be reached or refuses is skipped. Throws with each server's reason.
 */
export async function fetchSpec(network: Network, servers: MgmtServerAddress[], volume: string, timer: SetTimer): Promise<{ spec: VolumeSpec; server: MgmtServerAddress; crl?: string }> {
  const why: string[] = [];
  for (const server of servers) {
    let r: MgmtReply;
    try {
      r = await askMgmt(network, server, { op: 'getSpec', volume }, timer);
    } catch (e) {
      why.push(`${server.host}:${server.port}: ${(e as Error).message}`);
      continue;
    }
    if (r.ok) return { spec: r.spec, server, ...(typeof r.crl === 'string' ? { crl: r.crl } : {}) };
    const err = new Error(`${server.host}:${server.port}: ${r.error}`) as Error & { code?: string };
    err.code = r.code;
    if (r.code === 'ENOENT' || r.code === 'EAGAIN' || r.code === 'EACCES') throw err;
    why.push(err.message);
  }
  throw Object.assign(new Error(`no volume server gave the spec of ${volume}: ${why.join('; ')}`), { code: 'ENOTCONN' });
}
