/** The transport a client reaches a volume's bricks with: TCP, or TLS for a volume with transport.tls on. */
import type { VolumeSpec } from '../dht/spec.js';
import { FsError } from '../common/errors.js';
import { tcpNetwork } from '../wire/tcp.js';
import { tlsFilesIn, tlsNetwork } from '../wire/tls.js';
import type { Network } from '../wire/transport.js';

export function specNetwork(spec: VolumeSpec, tlsDir?: string): Network {
  if (!spec.options?.tls) return tcpNetwork;
  const files = tlsDir ? tlsFilesIn(tlsDir) : spec.tls;
  if (!files) throw new FsError('EACCES', `volume ${spec.name} takes TLS clients only (transport.tls on): give a client certificate (dhtfs cert issue client NAME -o DIR; the spec's tls {ca, cert, key}, or --tls-dir DIR)`);
  return tlsNetwork({ files });
}
