/**
 * Network namespace switching for the calling thread, through libc setns(2).
 * setns with CLONE_NEWNET moves only the calling thread (man 2 setns), which
 * for xlb's synchronous libbpf calls is Node's main thread: BPF_PROG_TEST_RUN's
 * bpf_fib_lookup and if_nametoindex then see that namespace. libuv's worker
 * threads stay where they were, so asynchronous I/O is unaffected.
 */
import koffi from 'koffi';
import fs from 'node:fs';

const libc = koffi.load('libc.so.6');
const setns = libc.func('int setns(int fd, int nstype)');
const CLONE_NEWNET = 0x40000000;

/**
 * Move the calling thread into the named namespace (`/run/netns/<name>`, as
 * made by `ip netns add`).
 * @returns a function that moves the thread back to where it was
 * @throws Error naming the namespace when it does not exist or setns fails
 */
export function enterNetns(name: string): () => void {
  const target = fs.openSync(`/run/netns/${name}`, 'r');
  const original = fs.openSync('/proc/thread-self/ns/net', 'r');
  try {
    if (setns(target, CLONE_NEWNET) !== 0) throw new Error(`setns into network namespace ${name} failed (errno ${koffi.errno()})`);
  } catch (e) {
    fs.closeSync(original);
    throw e;
  } finally {
    fs.closeSync(target);
  }
  return () => {
    try {
      if (setns(original, CLONE_NEWNET) !== 0) throw new Error(`setns back from network namespace ${name} failed (errno ${koffi.errno()})`);
    } finally {
      fs.closeSync(original);
    }
  };
}
