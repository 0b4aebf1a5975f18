/**
 * The whole agent (Agent.start, Kubernetes source, in-memory maps) with
 * layer 2 and an L2AnnouncementPolicy written to the in-test API server
 * while it runs: the policy decides at once whether the node answers ARP
 * for a VIP, a refused policy shows in /v1/issues, and deleting the policy
 * brings the l2 section's behaviour back. (The pool resources are shown
 * through the agent in ipam-pool-resources.test.ts; BGPPeers with gobgpd in
 * test/e2e/bgp-peers.test.ts.)
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { FakeApiServer, nodeObject, serviceObject, sliceObject } from '../helpers/fake-apiserver.js';
import { Agent } from '../../src/agent/agent.js';
import { parseConfig } from '../../src/config/load.js';
import { FakeLBMaps } from '../../src/datapath/lbmaps.js';
import { FakeL2Maps } from '../../src/datapath/l2maps.js';
import { waitFor } from '../../src/util/wait.js';

it('an L2AnnouncementPolicy created, changed and deleted while the agent runs decides whether it answers ARP for a VIP', async () => {
  const server = await FakeApiServer.start();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlb-crd-l2-'));
  server.upsert('nodes', { ...nodeObject('node1', ['198.18.0.11']), metadata: { name: 'node1', labels: { zone: 'a' } } });
  // A LoadBalancer service whose VIP another controller wrote, with a ready endpoint on this node.
  server.upsert('services', serviceObject('web', { type: 'LoadBalancer', lbIP: '192.0.2.10', nodePort: 30080, loadBalancerClass: 'example.com/lb' }));
  server.upsert('endpointslices', sliceObject('web-1', 'web', ['10.0.0.1'], { node: 'node1' }));
  const l2maps = new FakeL2Maps();
  const agent = await Agent.start(
    parseConfig(
      {
        node: { name: 'node1', addresses: ['198.18.0.11'] },
        interfaces: ['lo'],
        source: { kubernetes: { kubeconfig: server.kubeconfigPath } },
        api: { listen: `unix:${path.join(dir, 'api.sock')}` },
        l2: { ownership: 'lease', gratuitousArp: { count: 0 }, lease: { leaseDurationSeconds: 3, renewDeadlineSeconds: 2, retryPeriodSeconds: 0.5 } },
      },
      dir,
    ),
    pino({ level: 'silent' }),
    { lbmaps: new FakeLBMaps(), l2maps },
  );
  const answers = () => l2maps.vips().includes('192.0.2.10');
  const policy = (spec: unknown) => server.upsert('l2announcementpolicies', { apiVersion: 'xlb.io/v1alpha1', kind: 'L2AnnouncementPolicy', metadata: { name: 'only-public' }, spec });
  try {
    await waitFor(() => answers(), 10_000, 'the VIP answered (no policy: the l2 section decides)');
    // A policy that does not select web: the node stops answering for it.
    policy({ serviceSelector: { matchLabels: { exposure: 'public' } } });
    await waitFor(() => !answers(), 5000, 'the VIP no longer answered');
    // web labelled public: answered again.
    server.upsert('services', serviceObject('web', { type: 'LoadBalancer', lbIP: '192.0.2.10', nodePort: 30080, loadBalancerClass: 'example.com/lb', labels: { exposure: 'public' } }));
    await waitFor(() => answers(), 5000, 'answered once the policy selects web');
    // The policy now wants nodes of zone b: not this one.
    policy({ serviceSelector: { matchLabels: { exposure: 'public' } }, nodeSelector: { matchLabels: { zone: 'b' } } });
    await waitFor(() => !answers(), 5000, 'not answered from a node the policy does not select');
    // The Node moves to zone b: answered again, without a restart.
    server.upsert('nodes', { ...nodeObject('node1', ['198.18.0.11']), metadata: { name: 'node1', labels: { zone: 'b' } } });
    await waitFor(() => answers(), 5000, 'answered after the Node label changed');
    // A refused policy is reported, and changes nothing.
    server.upsert('l2announcementpolicies', { apiVersion: 'xlb.io/v1alpha1', kind: 'L2AnnouncementPolicy', metadata: { name: 'broken' }, spec: { nodeSelector: { matchExpressions: [{ key: 'zone', operator: 'In' }] } } });
    await waitFor(() => agent.issues().some((i) => i.object === 'L2AnnouncementPolicy broken'), 5000, 'broken in /v1/issues');
    assert.ok(answers(), 'still answered');
    // Back to zone a: not answered; then the policy deleted: the l2 section decides again (broken does not count).
    server.upsert('nodes', { ...nodeObject('node1', ['198.18.0.11']), metadata: { name: 'node1', labels: { zone: 'a' } } });
    await waitFor(() => !answers(), 5000, 'not answered from zone a');
    server.remove('l2announcementpolicies', undefined, 'only-public');
    await waitFor(() => answers(), 5000, 'answered: no accepted policy left');
  } finally {
    await agent.stop({ uninstall: true });
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
