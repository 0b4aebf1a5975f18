/**
 * This node's identity as the agent derives it when the configuration does
 * not spell it out.
 */
import os from 'node:os';

/**
 * IPv4 addresses of `interfaces`, in interface order (the first becomes the
 * SNAT source). Reads the calling process's network namespace.
 */
export function nodeAddresses(interfaces: string[]): string[] {
  const all = os.networkInterfaces();
  const out: string[] = [];
  for (const name of interfaces) {
    for (const a of all[name] ?? []) if (a.family === 'IPv4' && !a.internal) out.push(a.address);
  }
  return out;
}
