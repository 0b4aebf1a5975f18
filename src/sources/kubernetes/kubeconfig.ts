/**
 * Loading the API server's address and credentials, in the order kube-proxy
 * and client-go use: an explicit kubeconfig file (`--kubeconfig`,
 * `source.kubernetes.kubeconfig`), else the in-cluster service account (a
 * pod: `KUBERNETES_SERVICE_HOST` and the token mounted at
 * /var/run/secrets/kubernetes.io/serviceaccount), else `KUBECONFIG` or
 * `~/.kube/config`.
 *
 * A kube-proxy replacement cannot rely on the `kubernetes` Service's
 * ClusterIP to reach the API server (it is what serves that ClusterIP), so
 * the DaemonSet sets KUBERNETES_SERVICE_HOST/PORT to the API server's real
 * address (deploy/daemonset.yaml), as Cilium's kube-proxy-free mode does.
 */
import fs from 'node:fs';
import { KubeConfig, ApiException } from '@kubernetes/client-node';

/** Where the in-cluster service account token is mounted. */
export const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/**
 * Load a KubeConfig.
 * @param file a kubeconfig file; without it, in-cluster, then the defaults
 * @returns the config, with a current cluster
 * @throws Error naming the file (or "in-cluster"/"default") and what is wrong
 */
export function loadKubeConfig(file?: string): KubeConfig {
  const kc = new KubeConfig();
  let from: string;
  try {
    if (file) {
      from = `kubeconfig ${file}`;
      kc.loadFromFile(file);
    } else if (process.env.KUBERNETES_SERVICE_HOST && fs.existsSync(SERVICE_ACCOUNT_TOKEN)) {
      from = `in-cluster config (KUBERNETES_SERVICE_HOST=${process.env.KUBERNETES_SERVICE_HOST})`;
      kc.loadFromCluster();
    } else {
      from = process.env.KUBECONFIG ? `KUBECONFIG=${process.env.KUBECONFIG}` : 'the default kubeconfig (~/.kube/config)';
      kc.loadFromDefault();
    }
  } catch (e) {
    throw new Error(`kubernetes source: cannot load ${file ? `kubeconfig ${file}` : 'the API server configuration'}: ${(e as Error).message}`);
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster?.server) throw new Error(`kubernetes source: ${from} has no current cluster with a server address`);
  return kc;
}

/** An API error reduced to what logs and decisions need. */
export interface ApiErrorInfo {
  /** HTTP status, or 0 when no response came (connection refused, reset, timeout). */
  code: number;
  /** Status `reason` (Conflict, NotFound, Expired, ...), when the server sent one. */
  reason?: string;
  /** Status `message`, or the transport error's message. */
  message: string;
}

/**
 * What went wrong with an API request, from client-node's ApiException (body
 * is a meta/v1 Status), a watch error (`statusCode`), or a transport error.
 */
export function apiErrorInfo(e: unknown): ApiErrorInfo {
  if (e instanceof ApiException) {
    let body: unknown = e.body;
    if (typeof body === 'string') {
      try {
        body = JSON.parse(body);
      } catch {
        /* not a Status: keep the text */
      }
    }
    const st = body && typeof body === 'object' ? (body as { reason?: string; message?: string }) : undefined;
    return { code: e.code, reason: st?.reason, message: st?.message ?? (typeof body === 'string' && body ? body : `HTTP ${e.code}`) };
  }
  const err = e as { statusCode?: number; code?: unknown; reason?: string; message?: string; name?: string } | undefined;
  const code = typeof err?.statusCode === 'number' ? err.statusCode : typeof err?.code === 'number' ? err.code : 0;
  const transport = typeof err?.code === 'string' ? ` (${err.code})` : '';
  return { code, reason: err?.reason, message: `${err?.message ?? String(e)}${transport}` };
}

/** `code reason: message`, for logs. */
export function formatApiError(e: unknown): string {
  const i = apiErrorInfo(e);
  return `${i.code ? `${i.code}${i.reason ? ` ${i.reason}` : ''}: ` : ''}${i.message}`;
}
