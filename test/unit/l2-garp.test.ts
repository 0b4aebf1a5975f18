/**
 * Gratuitous ARP through arping (src/l2/garp.ts), with a stand-in arping
 * script that logs its arguments: both forms each round, the spacing,
 * cancellation on loss, failures counted, and the iputils check.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ArpingGarpSender, checkArping } from '../../src/l2/garp.js';
import { waitFor } from '../../src/util/wait.js';

let dir = '';
let arping = '';
let logFile = '';

/** Lines the stand-in logged: [ms since epoch, ...argv]. */
function calls(): Array<{ at: number; args: string[] }> {
  if (!fs.existsSync(logFile)) return [];
  return fs
    .readFileSync(logFile, 'utf8')
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [at, ...args] = l.split(' ');
      return { at: Number(at) / 1e6, args };
    });
}
const callsFor = (vip: string) => calls().filter((c) => c.args.at(-1) === vip);

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlb-garp-'));
  logFile = path.join(dir, 'calls.log');
  arping = path.join(dir, 'arping');
  // Like iputils arping: -V prints the version; 192.0.2.66 fails as a bind error would.
  fs.writeFileSync(
    arping,
    `#!/bin/sh
if [ "$1" = "-V" ]; then echo "arping from iputils 20221126"; exit 0; fi
for a; do last="$a"; done
if [ "$last" = "192.0.2.66" ]; then echo "arping: bind: Cannot assign requested address" >&2; exit 2; fi
echo "$(date +%s%N) $*" >> ${logFile}
sleep 0.2
`,
    { mode: 0o755 },
  );
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('ArpingGarpSender', () => {
  it('sends count rounds of the request form (-U) and the reply form (-A), the first at once, spaced by intervalMs', async () => {
    const g = new ArpingGarpSender({ count: 3, intervalMs: 150, arping });
    const t0 = Date.now();
    g.announce('192.0.2.10', 'eth0');
    await waitFor(() => callsFor('192.0.2.10').length === 6, 5000, 'six arping runs');
    const c = callsFor('192.0.2.10');
    assert.deepEqual(c.map((x) => x.args.join(' ')).sort(), [
      '-A -q -c 1 -I eth0 192.0.2.10',
      '-A -q -c 1 -I eth0 192.0.2.10',
      '-A -q -c 1 -I eth0 192.0.2.10',
      '-U -q -c 1 -I eth0 192.0.2.10',
      '-U -q -c 1 -I eth0 192.0.2.10',
      '-U -q -c 1 -I eth0 192.0.2.10',
    ]);
    const times = c.map((x) => x.at).sort((a, b) => a - b);
    assert.ok(times[0] - t0 < 150, `first frame after ${Math.round(times[0] - t0)} ms`);
    assert.ok(times[5] - times[0] >= 290, `last round ${Math.round(times[5] - times[0])} ms after the first (2 intervals)`);
    await waitFor(() => g.counters().sent === 6, 5000, 'six frames counted');
    await g.stop();
  });

  it('cancel() stops the rounds still to come for a lost VIP, on every interface', async () => {
    const g = new ArpingGarpSender({ count: 3, intervalMs: 150, arping });
    g.announce('192.0.2.20', 'eth0');
    g.announce('192.0.2.20', 'eth1');
    g.cancel('192.0.2.20');
    // 192.0.2.21's last round comes after the cancelled VIP's would have.
    g.announce('192.0.2.21', 'eth0');
    await waitFor(() => callsFor('192.0.2.21').length === 6, 5000, '192.0.2.21 announced');
    assert.equal(callsFor('192.0.2.20').length, 4, 'only the first round, on both interfaces');
    await g.stop();
  });

  it('counts a failing arping and logs it, without throwing', async () => {
    const errors: string[] = [];
    const log = { error: (o: { err: string }) => errors.push(o.err) } as never;
    const g = new ArpingGarpSender({ count: 1, intervalMs: 100, arping, log });
    g.announce('192.0.2.66', 'eth0');
    await waitFor(() => g.counters().failed === 2, 5000, 'two failures counted');
    assert.equal(g.counters().sent, 0);
    assert.match(errors[0], /Cannot assign requested address/);
    assert.equal(errors.length, 1, 'the same error is logged once');
    await g.stop();
  });

  it('count 0 sends nothing; stop() cancels pending rounds and waits for running arpings', async () => {
    const none = new ArpingGarpSender({ count: 0, intervalMs: 100, arping });
    none.announce('192.0.2.30', 'eth0');
    const g = new ArpingGarpSender({ count: 5, intervalMs: 100, arping, maxConcurrent: 1 });
    g.announce('192.0.2.31', 'eth0');
    await waitFor(() => callsFor('192.0.2.31').length === 1, 5000, 'first frame');
    await g.stop();
    const n = callsFor('192.0.2.31').length;
    assert.ok(n <= 2, `${n} frames after stop`);
    assert.equal(callsFor('192.0.2.30').length, 0);
  });
});

describe('checkArping', () => {
  it('accepts iputils arping', async () => {
    await checkArping(arping);
  });

  it('refuses another arping, and a missing one, saying what to install', async () => {
    const other = path.join(dir, 'other-arping');
    fs.writeFileSync(other, '#!/bin/sh\necho "ARPing 2.21, by Thomas Habets"\n', { mode: 0o755 });
    await assert.rejects(checkArping(other), /is not iputils arping .*install iputils-arping/);
    await assert.rejects(checkArping(path.join(dir, 'missing')), /not runnable .*install iputils-arping/);
  });
});
