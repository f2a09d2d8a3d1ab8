/** The transport a client reaches a volume's bricks with: TCP, or TLS for a volume with transport.tls on. */
import type { VolumeSpec } from '../dht/spec.js';
import type { Clock } from '../common/env.js';
import { FsError } from '../common/errors.js';
import { tcpNetwork } from '../wire/tcp.js';
import path from 'node:path';
import { clientTlsFiles, defaultClientTlsDir, keepNewerCrl, read, tlsFilesIn, tlsNetwork } from '../wire/tls.js';
import { fetchSpec, parseServerList, parseVolumeAddress } from '../wire/mgmt.js';
import type { Network } from '../wire/transport.js';

/** The client's log for its TLS transport: a server refused (its certificate revoked), a CRL not the CA's. */
function tlsLog(log?: (level: 'warn', msg: string) => void): ((msg: string, extra: Record<string, unknown>) => void) | undefined {
  return log && ((msg, extra) => log('warn', `${msg}${extra.remote ? ` ${String(extra.remote)}` : ''}: ${String(extra.reason ?? JSON.stringify(extra))}`));
}

export function specNetwork(spec: VolumeSpec, tlsDir?: string, log?: (level: 'warn', msg: string) => void): Network {
  if (!spec.options?.tls) return tcpNetwork;
  const files = tlsDir ? tlsFilesIn(tlsDir) : spec.tls;
  if (!files) throw new FsError('EACCES', `volume ${spec.name} takes TLS clients only (transport.tls on): give a client certificate (dhtfs cert issue client NAME -o DIR; the spec's tls {ca, cert, key}, or --tls-dir DIR)`);
  return tlsNetwork({ files, log: tlsLog(log) });
}

export interface ByHostOptions {
  /** The client's TLS folder (default: defaultClientTlsDir()). */
  tlsDir?: string;
  /** Nodes asked when the first one does not answer (mount's backup-volfile-servers), in order: "host2:host3" or a list. */
  volfileServers?: string | string[];
  /** Their management port (default: the one in the address, else 24007). */
  mgmtPort?: number;
  log?: (level: 'warn', msg: string) => void;
}

/**
 * The spec of a volume given as `HOST:/NAME`, from the node daemon of HOST or, when it does not answer,
 * of the backup servers, over the management path's TLS with this client's certificate; for a volume
 * with transport.tls on, the spec's `tls` is that certificate too. The cluster CA's CRL comes with the
 * spec and is kept in the TLS folder (crl.pem, when newer than the one there): from then on the client
 * refuses a node or brick whose certificate it revokes (a host `peer detach` took out of the pool).
 */
export async function specByHost(address: string, clock: Clock, o: ByHostOptions = {}): Promise<VolumeSpec> {
  const a = parseVolumeAddress(address);
  if (!a) throw new FsError('EINVAL', `${address}: HOST:/VOLUME expected`);
  const port = o.mgmtPort ?? a.server.port;
  const backups = typeof o.volfileServers === 'string' ? parseServerList(o.volfileServers, port) : (o.volfileServers ?? []).flatMap((s) => parseServerList(s, port));
  const dir = o.tlsDir ?? defaultClientTlsDir();
  const c = clientTlsFiles(dir);
  if ('missing' in c) throw new FsError('EACCES', `${address}: no client certificate: ${c.missing} is missing (on the host of the cluster's CA: dhtfs cert issue client NAME -o DIR; then copy DIR to ${dir}, or give tls-dir=DIR)`);
  const crl = path.join(dir, 'crl.pem');
  const files = { ...c.files, crl };
  const got = await fetchSpec(tlsNetwork({ files, log: tlsLog(o.log) }), [{ host: a.server.host, port }, ...backups], a.volume, (ms, fn) => clock.setTimer(ms, fn));
  if (got.crl !== undefined) {
    try {
      const r = keepNewerCrl(crl, got.crl, read(files.ca, 'CA'));
      if (r.refused) o.log?.('warn', `the CRL node ${got.server.host}:${got.server.port} sent is refused (${r.refused}): the one in ${crl} (if any) stays`);
    } catch (e) {
      o.log?.('warn', `the cluster's CRL could not be kept in ${crl}: ${(e as Error).message}; the one there (if any) is checked`);
    }
  }
  const { spec } = got;
  return spec.options?.tls ? { ...spec, tls: { ca: files.ca, cert: files.cert, key: files.key, crl } } : spec;
}
