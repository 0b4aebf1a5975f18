/**
 * The object kinds xlb deploys, each with its kubernetes-models class, whose
 * validate() checks an object against the Kubernetes API's OpenAPI schema
 * (the Prometheus Operator's CRD schemas for ServiceMonitor and
 * PrometheusRule; apiextensions.k8s.io/v1 for the chart's CRDs).
 */
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Service } from 'kubernetes-models/v1/Service';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { ClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import { ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import { CustomResourceDefinition } from 'kubernetes-models/apiextensions.k8s.io/v1/CustomResourceDefinition';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule';

/** A kubernetes-models class: built from a plain object, validate() throws naming the first bad field. */
export type ModelClass = new (o: never) => { validate(): void };

/** The classes by `apiVersion/kind` (`v1/ConfigMap`, `apps/v1/DaemonSet`, ...). */
export const MODELS: Record<string, ModelClass> = {
  'v1/Namespace': Namespace as never,
  'v1/ServiceAccount': ServiceAccount as never,
  'v1/ConfigMap': ConfigMap as never,
  'v1/Service': Service as never,
  'apps/v1/DaemonSet': DaemonSet as never,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole as never,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding as never,
  'rbac.authorization.k8s.io/v1/Role': Role as never,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding as never,
  'apiextensions.k8s.io/v1/CustomResourceDefinition': CustomResourceDefinition as never,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor as never,
  'monitoring.coreos.com/v1/PrometheusRule': PrometheusRule as never,
};

/**
 * Validate an object against its kind's schema.
 * @throws Error `<kind> <name>: unknown kind` when MODELS has no class for it, else the class's validation error
 */
export function validateObject(obj: { apiVersion?: unknown; kind?: unknown; metadata?: { name?: unknown } }): void {
  const Model = MODELS[`${obj.apiVersion}/${obj.kind}`];
  if (!Model) throw new Error(`${obj.apiVersion} ${obj.kind} ${obj.metadata?.name}: a kind test/helpers/k8s-models.ts does not know`);
  new Model(obj as never).validate();
}
