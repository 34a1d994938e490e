// The lab Kubernetes API server: public surface.
export { LabApiServer, LabApiServerError, type LabApiServerOptions, type ListenOptions } from './server.js';
export { renderKubeconfig } from './kubeconfig.js';
export { runApiServerProcess, type ApiServerProcessOptions } from './process.js';
export { ApiError, type ApiErrorCode, type KubeStatus } from './errors.js';
export type { KubeObject, ObjectMeta } from './store.js';
export { StoreFileError } from './store.js';
export { RESOURCE_KINDS, type ResourceKind } from './resources.js';
