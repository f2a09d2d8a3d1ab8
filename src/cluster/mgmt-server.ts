/**
 * A node daemon's management server (issue 19; glusterd's port 24007): it gives clients the spec of a
 * started volume from the cluster's store, so that `dhtfs mount host1:/NAME` needs no spec file. The
 * network is injected: TLS with mutual authentication in the product (wire/tls.ts, which refuses and logs
 * a client without a certificate of the cluster's CA, or with a revoked one), since a spec holds the
 * volume's secret. The protocol itself is wire/mgmt.ts.
 */
import { serveMgmt, type MgmtReply, type MgmtRequest } from '../wire/mgmt.js';
import type { Listener, Network } from '../wire/transport.js';
import { clientSpecOf, keys, parseVolume } from './records.js';
import type { Store } from './store.js';
import type { NodeLog } from './node.js';
import type { Clock } from '../common/env.js';

export class MgmtServer {
  private listener: Listener | null = null;

  constructor(
    private readonly store: Store,
    private readonly network: Network,
    private readonly clock: Clock,
    private readonly log: NodeLog,
  ) {}

  /** Listens on `host:port`; resolves with the port bound. */
  async listen(host: string, port: number): Promise<number> {
    this.listener = await serveMgmt(
      this.network,
      host,
      port,
      (ms, fn) => this.clock.setTimer(ms, fn),
      (req, remote, peerName) => this.answer(req, remote, peerName),
    );
    return this.listener.port;
  }

  /** The spec of a started volume, for a client `peerName` (its certificate's CN) its auth.ssl-allow lets in. */
  async answer(req: MgmtRequest, remote: string, peerName?: string): Promise<MgmtReply> {
    let e;
    try {
      e = await this.store.get(keys.volume(req.volume));
    } catch (err) {
      this.log('warn', `mgmt: spec of ${req.volume} for ${remote}: ${(err as Error).message}`);
      return { ok: false, error: `the cluster state cannot be read here: ${(err as Error).message}`, code: 'EIO' };
    }
    if (!e) return { ok: false, error: `volume ${req.volume} does not exist`, code: 'ENOENT' };
    const v = parseVolume(e.key, e.value);
    if (v.state !== 'started') return { ok: false, error: `volume ${req.volume} is not started`, code: 'EAGAIN' };
    if (v.sslAllow && !v.sslAllow.includes('*') && !(peerName && v.sslAllow.includes(peerName))) {
      this.log('warn', `mgmt: spec of ${v.name} refused to ${remote} (certificate ${peerName ?? 'none'}): not in the volume's auth.ssl-allow`);
      return { ok: false, error: `volume ${v.name} is not for this client's certificate (${peerName ?? 'none'}; auth.ssl-allow)`, code: 'EACCES' };
    }
    // The CA's CRL with it: the client refuses a node or brick it revokes (a detached host) from now on.
    const crl = await this.store.get(keys.pkiCrl).catch(() => null);
    this.log('info', `mgmt: spec of ${v.name} given to ${remote}`);
    return { ok: true, spec: clientSpecOf(v), ...(crl ? { crl: crl.value } : {}) };
  }

  async close(): Promise<void> {
    await this.listener?.close();
    this.listener = null;
  }
}
