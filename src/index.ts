/** dhtfs: the library API. */
export { Volume, FileHandle, parseFlags, type OpenFlags, type ConnectOptions } from './api/volume.js';
export { Stats, Dirent } from './api/stats.js';
export { FsError } from './common/errors.js';
export type { VolumeSpec, BrickSpec, VolumeOptions } from './dht/spec.js';
export { validateSpec } from './dht/spec.js';
export { dhtHash, dmHashBytes } from './dht/hash.js';
