/**
 * The interface every source of cluster state implements (the manifests
 * file, src/sources/file; the Kubernetes API through informers,
 * src/sources/kubernetes): a source converts what it reads into the model
 * (src/model/types.ts) and hands over whole snapshots, so the agent programs
 * the same way whichever source it runs.
 */
import type { ClusterState, InputIssue } from '../model/types.js';

/**
 * One complete view of the cluster as a source knows it.
 *
 * - `state`: every valid Service and EndpointSlice (keys `namespace/name`);
 *   the consumer programs exactly this, so an object missing here is removed.
 * - `issues`: the objects that were skipped and why (object and field named).
 */
export interface Snapshot {
  state: ClusterState;
  issues: InputIssue[];
}

/**
 * A source of {@link Snapshot}s.
 *
 * Contract:
 * - `start(onSnapshot)` resolves after the first snapshot has been delivered
 *   to `onSnapshot`, and rejects (with an Error naming what failed: the file
 *   and line, the API server) when no first snapshot can be produced.
 * - After that, `onSnapshot` is called again each time the state changes,
 *   always with the whole state, never a delta; a source that tracks its
 *   changes may add `state.changed`, the keys that differ from its previous
 *   snapshot (ClusterState.changed). Calls are not concurrent. A delivered
 *   snapshot never changes afterwards.
 * - When the input later becomes unreadable (a file that does not parse, a
 *   lost connection), the source reports it through its logger and emits
 *   nothing: the last good snapshot stays in force.
 * - `stop()` releases watchers and timers; no `onSnapshot` call happens after
 *   it resolves. It is idempotent.
 */
export interface Source {
  start(onSnapshot: (snapshot: Snapshot) => void): Promise<void>;
  stop(): Promise<void>;
}
