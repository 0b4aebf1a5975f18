/**
 * The manifests in deploy/ (generated from the Helm chart by `npm run
 * gen:deploy`) against the Kubernetes API schemas (kubernetes-models: every
 * object, CRDs included, through its class's validate()), plus
 * what the schemas cannot say: RBAC is exactly the least-privilege set, the
 * DaemonSet runs on the host network with only the capabilities it needs
 * and bpffs mounted, and the ConfigMap holds a valid agent configuration.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { MODELS } from '../helpers/k8s-models.js';
import { ConfigSchema } from '../../src/config/schema.js';
import { parseIpamConfig } from '../../src/ipam/config.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const deployDir = path.join(root, 'deploy');

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;

function loadAll(): Array<{ file: string; obj: Obj }> {
  const out: Array<{ file: string; obj: Obj }> = [];
  for (const f of fs.readdirSync(deployDir).filter((x) => /\.ya?ml$/.test(x)).sort()) {
    for (const doc of parseAllDocuments(fs.readFileSync(path.join(deployDir, f), 'utf8'))) {
      assert.equal(doc.errors.length, 0, `${f}: ${doc.errors[0]?.message}`);
      const obj = doc.toJS() as Obj | null;
      if (obj) out.push({ file: f, obj });
    }
  }
  return out;
}
const objects = loadAll();
const find = (kind: string, name?: string) => objects.map((o) => o.obj).filter((o) => o.kind === kind && (!name || o.metadata?.name === name));
const one = (kind: string, name?: string) => {
  const all = find(kind, name);
  assert.equal(all.length, 1, `exactly one ${kind}${name ? ` ${name}` : ''}`);
  return all[0];
};

describe('deploy/ manifests', () => {
  it('every object is of a known kind and valid against the Kubernetes API schema', () => {
    assert.ok(objects.length >= 8, `the namespace, the RBAC objects, the ConfigMap and the DaemonSet (got ${objects.length})`);
    for (const { file, obj } of objects) {
      const Model = MODELS[`${obj.apiVersion}/${obj.kind}`];
      assert.ok(Model, `${file}: unexpected ${obj.apiVersion} ${obj.kind}`);
      assert.doesNotThrow(() => new Model(obj as never).validate(), `${file}: ${obj.kind} ${obj.metadata?.name}`);
    }
  });

  it('the schema check is real: a broken DaemonSet fails it', () => {
    const ds = structuredClone(one('DaemonSet'));
    ds.spec.template.spec.containers[0].securityContext.capabilities.add = 'BPF';
    assert.throws(() => new DaemonSet(ds).validate(), /capabilities\/add must be array/);
  });

  it('RBAC grants exactly the least-privilege set', () => {
    const rules = (o: Obj) =>
      o.rules
        .flatMap((r: Obj) =>
          r.resources.flatMap((res: string) => r.verbs.map((v: string) => `${r.apiGroups[0] || 'core'}/${res}:${v}${r.resourceNames ? `[${r.resourceNames.join(',')}]` : ''}`)),
        )
        .sort();
    assert.deepEqual(rules(one('ClusterRole', 'xlb')), [
      'core/events:create',
      'core/events:patch',
      'core/nodes:list',
      'core/nodes:watch',
      'core/services/status:patch',
      'core/services:list',
      'core/services:watch',
      'discovery.k8s.io/endpointslices:list',
      'discovery.k8s.io/endpointslices:watch',
      'xlb.io/bgpadvertisements/status:patch',
      'xlb.io/bgpadvertisements:list',
      'xlb.io/bgpadvertisements:watch',
      'xlb.io/bgppeers/status:patch',
      'xlb.io/bgppeers:list',
      'xlb.io/bgppeers:watch',
      'xlb.io/l2announcementpolicies/status:patch',
      'xlb.io/l2announcementpolicies:list',
      'xlb.io/l2announcementpolicies:watch',
      'xlb.io/loadbalancerippools/status:patch',
      'xlb.io/loadbalancerippools:list',
      'xlb.io/loadbalancerippools:watch',
    ]);
    const role = one('Role', 'xlb-leader-election');
    assert.equal(role.metadata.namespace, 'xlb-system');
    assert.deepEqual(rules(role), ['coordination.k8s.io/leases:create', 'coordination.k8s.io/leases:get', 'coordination.k8s.io/leases:update']);
    // No wildcard anywhere.
    for (const o of [...find('ClusterRole'), ...find('Role')]) {
      for (const r of o.rules) for (const f of ['apiGroups', 'resources', 'verbs']) assert.ok(!r[f].includes('*'), `${o.metadata.name}: wildcard in ${f}`);
    }
    // Bindings name the agent's ServiceAccount.
    const sa = one('ServiceAccount', 'xlb');
    for (const b of [one('ClusterRoleBinding', 'xlb'), one('RoleBinding', 'xlb-leader-election')]) {
      assert.deepEqual(b.subjects, [{ kind: 'ServiceAccount', name: 'xlb', namespace: sa.metadata.namespace }]);
    }
    assert.equal(one('ClusterRoleBinding', 'xlb').roleRef.name, 'xlb');
    assert.equal(one('RoleBinding', 'xlb-leader-election').roleRef.name, 'xlb-leader-election');
  });

  it('the DaemonSet runs on the host network, unprivileged, with BPF, PERFMON, NET_ADMIN and NET_RAW only, and bpffs mounted', () => {
    const ds = one('DaemonSet', 'xlb');
    const pod = ds.spec.template.spec;
    assert.equal(pod.hostNetwork, true);
    assert.equal(pod.serviceAccountName, 'xlb');
    assert.deepEqual(ds.spec.selector.matchLabels, ds.spec.template.metadata.labels);
    const c = pod.containers[0];
    assert.notEqual(c.securityContext.privileged, true);
    assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
    assert.deepEqual([...c.securityContext.capabilities.add].sort(), ['BPF', 'NET_ADMIN', 'NET_RAW', 'PERFMON']);
    const bpffs = pod.volumes.find((v: Obj) => v.hostPath?.path === '/sys/fs/bpf');
    assert.ok(bpffs, 'a hostPath volume for /sys/fs/bpf');
    const mount = c.volumeMounts.find((m: Obj) => m.name === bpffs.name);
    assert.equal(mount.mountPath, '/sys/fs/bpf');
    assert.notEqual(mount.mountPropagation, 'Bidirectional', 'Bidirectional propagation would need a privileged container');
    // The node name reaches the agent through the downward API.
    assert.deepEqual(c.env.find((e: Obj) => e.name === 'NODE_NAME').valueFrom, { fieldRef: { fieldPath: 'spec.nodeName' } });
    assert.ok(c.args.includes('$(NODE_NAME)'));
    assert.equal(c.readinessProbe.httpGet.path, '/readyz');
    // The ConfigMap it mounts exists in its namespace.
    const cmName = pod.volumes.find((v: Obj) => v.configMap)?.configMap.name;
    assert.equal(one('ConfigMap', cmName).metadata.namespace, ds.metadata.namespace);
  });

  it("the socket hooks get the host's cgroup2 hierarchy: mounted on the host by the init container, seen by the agent where the ConfigMap points", () => {
    const pod = one('DaemonSet', 'xlb').spec.template.spec;
    const cfg = parseAllDocuments(one('ConfigMap', 'xlb-config').data['config.yaml'])[0].toJS() as Obj;
    const root = cfg.socketLB.cgroupRoot as string;
    const vol = pod.volumes.find((v: Obj) => v.hostPath?.path === root);
    assert.ok(vol, `a hostPath volume for ${root}`);
    const mount = pod.containers[0].volumeMounts.find((m: Obj) => m.name === vol.name);
    assert.equal(mount.mountPath, root);
    assert.equal(mount.mountPropagation, 'HostToContainer', 'a mount the init container made on the host is seen');
    const init = pod.initContainers.find((c: Obj) => c.name === 'mount-cgroup');
    assert.ok(init.command.join(' ').includes(`mount -t cgroup2 none ${root}`));
    assert.ok(init.command.includes('--mount=/hostproc/1/ns/mnt'), 'in the host mount namespace');
    assert.notEqual(init.securityContext.privileged, true);
  });

  it('the ConfigMap holds a valid agent configuration that follows the API server', () => {
    const cm = one('ConfigMap', 'xlb-config');
    const doc = parseAllDocuments(cm.data['config.yaml'])[0];
    assert.equal(doc.errors.length, 0);
    const cfg = doc.toJS() as Obj;
    assert.deepEqual(Object.keys(cfg.source), ['kubernetes'], 'the Kubernetes source');
    assert.equal(cfg.source.kubernetes.kubeconfig, undefined, 'in-cluster: the pod\'s service account');
    // node.name comes from --node-name $(NODE_NAME); the test stands in for it.
    const withNode: Obj = { ...cfg, node: { name: 'node-a' } };
    // `ipam` is validated by its own section schema until the agent's schema nests it.
    const hasIpam = 'ipam' in (ConfigSchema.shape as Record<string, unknown>);
    const { ipam, ...rest } = withNode;
    const r = ConfigSchema.safeParse(hasIpam ? withNode : rest);
    assert.ok(r.success, r.success ? '' : JSON.stringify(r.error.issues));
    const parsed = parseIpamConfig(ipam);
    assert.equal(parsed.leaderElection.namespace, one('DaemonSet', 'xlb').metadata.namespace, 'the Lease lives in the DaemonSet\'s namespace, where the Role allows it');
    assert.equal(parsed.leaderElection.leaseName, 'xlb-ipam');
  });
});
